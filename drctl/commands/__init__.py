"""One module per drctl command."""
