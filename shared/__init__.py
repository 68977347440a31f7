"""Domain and libraries shared by the app and the command line. No Functions bindings."""
