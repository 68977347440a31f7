"""The command line: python -m drctl."""
