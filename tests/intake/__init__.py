"""Tests of the edges: signal intake, approvals, the card relay, on the running stack."""
