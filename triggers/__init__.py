"""The edges of the app: HTTP, Event Grid and timer functions."""

from triggers.approvals import bp as approvals_bp
from triggers.incidents import bp as incidents_bp
from triggers.intake import bp as intake_bp
from triggers.openapi import bp as openapi_bp
from triggers.sample import bp as sample_bp
from triggers.watch import bp as watch_bp

blueprints = [intake_bp, incidents_bp, approvals_bp, openapi_bp, watch_bp, sample_bp]
