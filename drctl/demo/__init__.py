"""The demo: the local stack, the alerts it sends, and the scenarios it drives."""
