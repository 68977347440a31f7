"""The replication monitor: an eternal orchestration per environment that observes its primary.

Durable's monitor pattern: observe, sleep on a durable timer, and every so often continue as
new so the history stays short. What it keeps (the primary's last WAL position and commit time)
is what an RPO estimate needs once the primary can no longer be asked. A primary that cannot be
observed is tried again later and later (``shared.watch.next_watch_interval``), and again at the
configured interval as soon as it answers.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared.watch import next_watch_interval

bp = df.Blueprint()

WATCH_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=2)
ROUNDS_PER_EXECUTION = 10
# The wait after a try whose activity failed outright (it could not say the configured one).
FALLBACK_INTERVAL_S = 5.0


def monitor_instance_id(environment: str) -> str:
    return f"monitor.{environment}"


@bp.orchestration_trigger(context_name="context", orchestration="replication_monitor")
def replication_monitor(context: df.DurableOrchestrationContext):
    """Observe ``environment``'s primary every ``interval_s`` seconds, forever."""
    raw = context.get_input()
    args = json.loads(raw) if isinstance(raw, str) else raw
    environment = args["environment"]
    failures = yield from observe_rounds(context, environment, int(args.get("failures") or 0))
    # The count of failed tries goes on into the next execution, so the wait keeps growing.
    context.continue_as_new({"environment": environment, "failures": failures})


def observe_rounds(
    context: df.DurableOrchestrationContext, environment: str, failures: int
) -> Generator[Any, Any, int]:
    """One execution's observations, each followed by the wait the last one asked for.

    ``failures`` counts the tries in a row that did not reach the primary; returns it as it
    stands after the last round.
    """
    for _ in range(ROUNDS_PER_EXECUTION):
        try:
            seen = yield context.call_activity_with_retry(
                "db_watch", WATCH_RETRY, {"environment": environment, "failures": failures}
            )
            failures = int(seen.get("failures") or 0)
            interval = float(seen.get("interval_s") or FALLBACK_INTERVAL_S)
            context.set_custom_status(seen)
        except Exception as exc:  # an unreachable primary is expected; keep watching
            failures += 1
            interval = next_watch_interval(FALLBACK_INTERVAL_S, failures)
            context.set_custom_status(
                {"error": str(exc)[:300], "failures": failures, "interval_s": interval}
            )
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=interval))
    return failures
