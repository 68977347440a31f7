"""The replication monitor: an eternal orchestration per environment that observes its primary.

Durable's monitor pattern: observe, sleep on a durable timer, and every so often continue as
new so the history stays short. What it keeps (the primary's last WAL position and commit time)
is what an RPO estimate needs once the primary can no longer be asked.
"""

from __future__ import annotations

import json
from datetime import timedelta

import azure.durable_functions as df

bp = df.Blueprint()

WATCH_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=2)
ROUNDS_PER_EXECUTION = 10


def monitor_instance_id(environment: str) -> str:
    return f"monitor.{environment}"


@bp.orchestration_trigger(context_name="context", orchestration="replication_monitor")
def replication_monitor(context: df.DurableOrchestrationContext):
    """Observe ``environment``'s primary every ``interval_s`` seconds, forever."""
    raw = context.get_input()
    args = json.loads(raw) if isinstance(raw, str) else raw
    environment = args["environment"]
    for _ in range(ROUNDS_PER_EXECUTION):
        try:
            seen = yield context.call_activity_with_retry(
                "db_watch", WATCH_RETRY, {"environment": environment}
            )
            interval = float(seen.get("interval_s") or 5)
            context.set_custom_status(seen)
        except Exception as exc:  # an unreachable primary is expected; keep watching
            interval = 5.0
            context.set_custom_status({"error": str(exc)[:300]})
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=interval))
    context.continue_as_new({"environment": environment})
