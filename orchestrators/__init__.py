"""Deterministic orchestrator functions: no I/O, no clock but the context's, no randomness."""

from orchestrators.approval import bp as approval_bp
from orchestrators.incident import bp as incident_bp
from orchestrators.plan import bp as plan_bp
from orchestrators.sample import bp as sample_bp
from orchestrators.watch import bp as watch_bp

blueprints = [incident_bp, plan_bp, approval_bp, watch_bp, sample_bp]
