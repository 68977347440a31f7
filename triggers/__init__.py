"""The edges of the app: HTTP, Event Grid and timer functions."""

from triggers.sample import bp as sample_bp

blueprints = [sample_bp]
