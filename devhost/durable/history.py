"""DTFx history events and the clock, in the shape the Python SDK's replay reads them.

Keys are PascalCase and `EventType` is the DTFx integer; every event carries `EventType`,
`EventId`, `IsPlayed` and `Timestamp` (the SDK raises without them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EXECUTION_STARTED = 0
EXECUTION_COMPLETED = 1
EXECUTION_TERMINATED = 3
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_CREATED = 7
SUB_COMPLETED = 8
SUB_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_RAISED = 15
CONTINUE_AS_NEW = 16
EXECUTION_SUSPENDED = 19
EXECUTION_RESUMED = 20

EVENT_NAMES = {
    0: "ExecutionStarted",
    1: "ExecutionCompleted",
    3: "ExecutionTerminated",
    4: "TaskScheduled",
    5: "TaskCompleted",
    6: "TaskFailed",
    7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted",
    9: "SubOrchestrationInstanceFailed",
    10: "TimerCreated",
    11: "TimerFired",
    12: "OrchestratorStarted",
    13: "OrchestratorCompleted",
    15: "EventRaised",
    16: "ContinueAsNew",
    19: "ExecutionSuspended",
    20: "ExecutionResumed",
}

# DTFx OrchestrationStatus integers used in ExecutionCompleted.
DTFX_STATUS = {"Completed": 1, "ContinuedAsNew": 2, "Failed": 3, "Terminated": 5}


def utcnow() -> datetime:
    return datetime.now(UTC)


def fmt(ts: datetime) -> str:
    """ISO-8601 UTC with six fractional digits and `Z`, as the SDK parses and emits it."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fmt_status_time(ts: str) -> str:
    """The management API's time format, `yyyy-MM-ddTHH:mm:ssZ`."""
    return ts[:19] + "Z"


def parse(ts: str) -> datetime:
    """Parse a timestamp this module or the SDK wrote (`Z` suffix, up to 7 fractional digits)."""
    text = ts.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail}"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def event(event_type: int, ts: datetime, event_id: int = -1, **fields) -> dict:
    return {
        "EventType": event_type,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": fmt(ts),
        **fields,
    }


def next_episode_time(history: list[dict], now: datetime) -> datetime:
    """A fresh episode timestamp that never goes back and never repeats the previous one."""
    last = None
    for ev in reversed(history):
        if ev["EventType"] == ORCHESTRATOR_STARTED:
            last = parse(ev["Timestamp"])
            break
    if last is not None and now <= last:
        return last + timedelta(microseconds=1)
    return now
