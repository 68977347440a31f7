"""The replication monitor's activity: observe an environment's servers, keep what was seen."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import azure.durable_functions as df

from activities.database import observe_server
from shared import runtime
from shared.incident import plan_config
from shared.recovery import DbServer, EarlierObservation
from shared.watch import ObservationStore, next_watch_interval

log = logging.getLogger(__name__)

bp = df.Blueprint()

_store: ObservationStore | None = None


def observations() -> ObservationStore:
    global _store
    if _store is None:
        _store = ObservationStore.from_settings(prefix=runtime.table_prefix())
    return _store


_observing = contextvars.ContextVar("replication_monitor_observing", default=False)


class _OneLinePerTry(logging.Filter):
    """Drops, inside a monitor's observation, what a failed try logs every time it fails.

    That is the credential chain's warning (a dozen lines when no Azure identity is available)
    and the ARM lookups' notes. The observation carries the same errors, and ``watch`` logs
    them on one line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_observing.get() and record.levelno <= logging.WARNING)


# The loggers a failed observation writes to on every try.
_QUIET_WHILE_OBSERVING = ("azure.identity._credentials.chained", "activities.database")
for _name in _QUIET_WHILE_OBSERVING:
    logging.getLogger(_name).addFilter(_OneLinePerTry())


@contextmanager
def _one_line_per_try() -> Iterator[None]:
    token = _observing.set(True)
    try:
        yield
    finally:
        _observing.reset(token)


def watch(environment: str, failures: int = 0) -> dict:
    """Probe the primary once; keep its WAL position and last commit time when it answered.

    ``failures`` is how many tries in a row failed before this one; the answer says how long to
    wait for the next (``interval_s``: the configured interval once the primary answers, longer
    after each failure). Not audited: it runs every few seconds and changes nothing.
    """
    env = runtime.config().environment(environment)
    server = DbServer(**plan_config(environment, env)["db"]["primary"])
    with _one_line_per_try():
        seen = observe_server(server, 1.0, primary=True)
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
    failures = 0 if seen.reachable else failures + 1
    interval_s = next_watch_interval(env.recovery.watch_interval.total_seconds(), failures)
    if failures:
        log.log(
            logging.WARNING if failures == 1 else logging.INFO,
            "replication monitor of '%s': primary %s not observed (%s; ARM: %s); "
            "failure %d in a row; next try in %.0f s",
            environment,
            server.resource.name,
            seen.error,
            seen.arm_error or "answered",
            failures,
            interval_s,
        )
    return {
        "primary_reachable": seen.reachable,
        "kept": kept,
        "interval_s": interval_s,
        "failures": failures,
        "error": seen.error,
    }


@bp.activity_trigger(input_name="payload", activity="db_watch")
def db_watch(payload: dict) -> dict:
    return watch(payload["environment"], int(payload.get("failures") or 0))
