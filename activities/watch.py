"""The replication monitor's activity: observe an environment's servers, keep what was seen."""

from __future__ import annotations

import logging

import azure.durable_functions as df

from activities.database import observe_server
from shared import runtime
from shared.incident import plan_config
from shared.recovery import DbServer, EarlierObservation
from shared.watch import ObservationStore

log = logging.getLogger(__name__)

bp = df.Blueprint()

_store: ObservationStore | None = None


def observations() -> ObservationStore:
    global _store
    if _store is None:
        _store = ObservationStore.from_settings(prefix=runtime.table_prefix())
    return _store


def watch(environment: str) -> dict:
    """Probe the primary once; keep its WAL position and last commit time when it answered.

    Not audited: it runs every few seconds and changes nothing.
    """
    env = runtime.config().environment(environment)
    config = plan_config(environment, env)
    seen = observe_server(DbServer(**config["db"]["primary"]), 1.0, primary=True)
    kept = False
    if seen.reachable and not seen.in_recovery and (seen.current_lsn or seen.last_commit_at):
        observations().save(
            environment,
            EarlierObservation(
                observed_at=seen.observed_at,
                primary_lsn=seen.current_lsn,
                primary_last_commit_at=seen.last_commit_at,
            ),
        )
        kept = True
    return {
        "primary_reachable": seen.reachable,
        "kept": kept,
        "interval_s": env.recovery.watch_interval.total_seconds(),
    }


@bp.activity_trigger(input_name="payload", activity="db_watch")
def db_watch(payload: dict) -> dict:
    return watch(payload["environment"])
