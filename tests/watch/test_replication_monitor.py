"""The replication monitor: it observes a primary at the configured interval while it answers,
and backs off, logging one line per try, while it does not."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

import pytest
import yaml

from devhost.pg import free_port
from shared import azure_clients, runtime
from shared.config import parse_config
from shared.watch import MAX_WATCH_BACKOFF_S, ObservationStore, next_watch_interval
from tests.plugins.stack import WORKLOADS, Stack

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------- the waits


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, MAX_WATCH_BACKOFF_S), (500, 60.0)],
)
def test_each_failed_try_doubles_the_wait_up_to_the_cap(failures, wait):
    assert next_watch_interval(1.0, failures) == wait


def test_an_interval_above_the_cap_is_kept_when_tries_fail():
    assert next_watch_interval(300.0, 4) == 300.0


# ------------------------------------------------------------------------ the orchestration


class Context:
    """The part of the orchestration context the monitor uses, answering from a script."""

    def __init__(self) -> None:
        self.current_utc_datetime = T0
        self.inputs: list[dict] = []
        self.waits: list[float] = []
        self.statuses: list[dict] = []

    def call_activity_with_retry(self, name, retry, payload):
        self.inputs.append(payload)
        return ("activity", name)

    def create_timer(self, fire_at):
        self.waits.append((fire_at - self.current_utc_datetime).total_seconds())
        self.current_utc_datetime = fire_at
        return ("timer", fire_at)

    def set_custom_status(self, status):
        self.statuses.append(status)


def _run(context: Context, answers: list, failures: int = 0) -> int:
    """Drive one execution's rounds as the Durable runtime would; the failures it ends with."""
    from orchestrators.watch import observe_rounds

    rounds = observe_rounds(context, "prod-eu", failures)
    script = iter(answers)
    asked = next(rounds)
    try:
        while True:
            if asked[0] != "activity":
                asked = rounds.send(None)
            elif isinstance(answer := next(script), Exception):
                asked = rounds.throw(answer)
            else:
                asked = rounds.send(answer)
    except StopIteration as finished:
        return finished.value


def _seen(failures: int, interval_s: float) -> dict:
    return {"primary_reachable": not failures, "failures": failures, "interval_s": interval_s}


def test_monitor_waits_as_each_observation_asks_and_hands_on_the_failures():
    from orchestrators.watch import ROUNDS_PER_EXECUTION

    answers = [_seen(1, 2.0), _seen(2, 4.0), _seen(0, 1.0)] + [_seen(0, 1.0)] * 6 + [_seen(1, 2.0)]
    context = Context()

    ended_with = _run(context, answers, failures=0)

    assert len(context.inputs) == ROUNDS_PER_EXECUTION
    assert [i["failures"] for i in context.inputs] == [0, 1, 2] + [0] * 7
    assert context.waits == [2.0, 4.0] + [1.0] * 7 + [2.0]
    assert ended_with == 1, "the next execution goes on counting"


def test_monitor_backs_off_when_the_observation_itself_fails():
    context = Context()

    ended_with = _run(context, [RuntimeError("no such environment")] * 10, failures=3)

    assert [i["failures"] for i in context.inputs] == list(range(3, 13))
    assert context.waits == [next_watch_interval(5.0, n) for n in range(4, 14)]
    assert context.waits[-1] == MAX_WATCH_BACKOFF_S
    assert ended_with == 13


# ---------------------------------------------------------------------------- the activity


@pytest.fixture
def no_azure_identity(monkeypatch):
    """ARM at a closed local port, asked with a credential chain that finds no identity: the
    chain fails as DefaultAzureCredential does without Azure, logging its many-line warning."""
    from azure.identity import ChainedTokenCredential, EnvironmentCredential

    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    for name in ("DR_ARM_STATIC_TOKEN", "DR_KEYVAULT_URL", "DR_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DR_ARM_ENDPOINT", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setattr(
        azure_clients,
        "credential",
        lambda settings=None: ChainedTokenCredential(EnvironmentCredential()),
    )


def _drctl_log_levels(caplog) -> None:
    """The levels ``drctl serve`` logs at: INFO, the Azure SDK's identity notes at WARNING."""
    caplog.set_level(logging.WARNING, logger="azure.identity")
    caplog.set_level(logging.INFO)  # last: it sets the capturing handler's level too


def _config(monkeypatch, *, admin_secret: bool):
    """The demo workloads file (watch interval 1 s), as the app's configuration."""
    data = yaml.safe_load(WORKLOADS.read_text())
    recovery = data["environments"]["prod-eu"]["recovery"]
    assert recovery["watch_interval"] == "1s"
    if not admin_secret:
        recovery.pop("admin_password_secret")
    config = parse_config(data)
    monkeypatch.setattr(runtime, "config", lambda: config)
    return config


def _primary_at(monkeypatch, config, port: int) -> None:
    """Where the primary listens, as if an earlier ARM answer had said (ARM fails here)."""
    from activities import database

    server_id = config.environment("prod-eu").postgres.primary.resource_id
    monkeypatch.setitem(database._known_addresses, server_id.lower(), ("127.0.0.1", port))


def test_a_failed_try_logs_one_line_and_asks_for_a_longer_wait(
    monkeypatch, caplog, no_azure_identity
):
    from activities.watch import watch

    config = _config(monkeypatch, admin_secret=False)
    _primary_at(monkeypatch, config, free_port())
    _drctl_log_levels(caplog)

    seen = watch("prod-eu", failures=2)

    assert not seen["primary_reachable"] and not seen["kept"]
    assert (seen["failures"], seen["interval_s"]) == (3, 8.0)
    [line] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert line.name == "activities.watch"
    text = line.getMessage()
    assert "\n" not in text
    assert "prod-eu" in text and "odoo-pg-weu" in text and "next try in 8 s" in text
    assert "ChainedTokenCredential failed" in text, "the ARM error is on the line"


def test_the_first_failed_try_is_a_warning(monkeypatch, caplog, no_azure_identity):
    from activities.watch import watch

    _config(monkeypatch, admin_secret=True)  # the secret names no vault: the try fails at once
    _drctl_log_levels(caplog)

    seen = watch("prod-eu")

    assert (seen["failures"], seen["interval_s"]) == (1, 2.0)
    [line] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert line.levelno == logging.WARNING and "DR_KEYVAULT_URL" in line.getMessage()


def test_a_primary_that_answers_is_kept_at_the_configured_interval_whatever_arm_says(
    monkeypatch, caplog, no_azure_identity, pg_server, storage_connection_string
):
    import activities.watch as activity

    config = _config(monkeypatch, admin_secret=False)
    _primary_at(monkeypatch, config, pg_server.port)
    prefix = f"w{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setenv("DR_TABLE_PREFIX", prefix)
    monkeypatch.setattr(activity, "_store", None)
    _drctl_log_levels(caplog)

    seen = activity.watch("prod-eu", failures=5)

    assert seen["primary_reachable"] and seen["kept"]
    assert (seen["failures"], seen["interval_s"]) == (0, 1.0)
    kept = ObservationStore(storage_connection_string, prefix=prefix).latest("prod-eu")
    assert kept is not None and kept.primary_lsn
    assert not [r for r in caplog.records if r.name == "activities.watch"]


# ----------------------------------------------------------------------------- on the stack


def test_monitor_of_a_primary_that_never_answers_backs_off(stack: Stack):
    # edge-2's database does not exist in local Azure: every try fails (ARM itself answers).
    deadline = time.monotonic() + 120
    status: dict = {}
    while time.monotonic() < deadline:
        status = (stack.status("monitor.edge-2") or {}).get("customStatus") or {}
        if (status.get("failures") or 0) >= 4:
            break
        time.sleep(1)

    assert status.get("failures", 0) >= 4, status
    assert status["interval_s"] >= 16.0
    assert status["primary_reachable"] is False
