"""Deterministic orchestrator functions: no I/O, no clock but the context's, no randomness."""

from orchestrators.sample import bp as sample_bp

blueprints = [sample_bp]
