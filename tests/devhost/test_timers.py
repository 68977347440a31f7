"""Timer triggers: the NCRONTAB parser, schedules on a running host, run on startup, past due."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from devhost.host import HostError, Schedule


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_every_five_minutes_on_the_minute():
    s = Schedule("0 */5 * * * *")
    assert s.next_after(_at("2024-05-01T10:03:07")) == _at("2024-05-01T10:05:00")
    assert s.next_after(_at("2024-05-01T10:05:00")) == _at("2024-05-01T10:10:00")


def test_weekday_names_and_ranges():
    s = Schedule("0 30 9 * * MON-FRI")
    # 2024-05-04 is a Saturday: the next run is Monday 9:30.
    assert s.next_after(_at("2024-05-04T08:00:00")) == _at("2024-05-06T09:30:00")


def test_lists_month_names_and_day_of_month():
    s = Schedule("15 0 0 1,15 JAN,JUL *")
    assert s.next_after(_at("2024-01-01T00:00:15")) == _at("2024-01-15T00:00:15")
    assert s.next_after(_at("2024-01-15T00:00:15")) == _at("2024-07-01T00:00:15")


def test_every_second_and_seconds_steps_within_a_range():
    assert Schedule("* * * * * *").next_after(_at("2024-05-01T10:00:00")) == _at(
        "2024-05-01T10:00:01"
    )
    s = Schedule("10-30/10 * * * * *")
    assert s.next_after(_at("2024-05-01T10:00:30")) == _at("2024-05-01T10:01:10")


def test_day_and_weekday_must_both_match():
    s = Schedule("0 0 0 13 * FRI")  # Friday the 13th
    assert s.next_after(_at("2024-01-01T00:00:00")) == _at("2024-09-13T00:00:00")


def test_sunday_is_zero_or_seven():
    assert Schedule("0 0 0 * * 7").sets[5] == Schedule("0 0 0 * * SUN").sets[5] == {0}


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "61 * * * * *", "* * * * * MONDAY", "*/0 * * * * *", "5-1 * * * * *"],
)
def test_bad_schedules_are_refused_with_a_reason(expression):
    with pytest.raises(HostError, match="schedule"):
        Schedule(expression)


def _ticks(host) -> list[dict]:
    path = host.state_dir / "ticks.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_timer_runs_on_its_schedule_and_on_startup(devhost_factory):
    host = devhost_factory(
        env={"TEST_TIMER_SCHEDULE": "*/1 * * * * *", "TEST_TIMER_ON_STARTUP": "1"}
    ).start()
    deadline = time.monotonic() + 10
    while len(_ticks(host)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    host.stop()
    ticks = _ticks(host)
    assert len(ticks) >= 3
    assert all(t["past_due"] is False for t in ticks)


def test_run_missed_while_down_is_past_due_at_start(devhost_factory):
    host = devhost_factory(env={"TEST_TIMER_SCHEDULE": "0 0 * * * *"})
    last = datetime.now(UTC) - timedelta(hours=2)
    (host.state_dir / "timers.json").write_text(json.dumps({"tick": {"last": last.isoformat()}}))
    host.start()
    deadline = time.monotonic() + 10
    while not _ticks(host) and time.monotonic() < deadline:
        time.sleep(0.1)
    host.stop()
    assert [t["past_due"] for t in _ticks(host)] == [True]


def test_no_run_at_start_when_nothing_was_missed(devhost_factory):
    host = devhost_factory(env={"TEST_TIMER_SCHEDULE": "0 0 0 1 1 *"})
    now = datetime.now(UTC).isoformat()
    (host.state_dir / "timers.json").write_text(json.dumps({"tick": {"last": now}}))
    host.start()
    time.sleep(1.0)
    host.stop()
    assert _ticks(host) == []
