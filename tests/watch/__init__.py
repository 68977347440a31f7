"""The replication monitor: backing off from a primary it cannot observe, one log line a try."""
