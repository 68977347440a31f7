"""The durable engine: runs orchestration episodes through the SDK's own replay, keeps them in
SQLite, runs activities in a bounded pool and fires timers.

The SDK decides what the orchestration does next; this module does what DTFx and the Durable
extension do around it: number the tasks, write the history, deliver completions, enforce the
checks the SDK skips (unknown functions, non-determinism), and retry `*_with_retry` calls.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from azure.functions._durable_functions import df_dumps, df_loads

from devhost.durable import history as h
from devhost.durable.status import InstanceStatus, status_of
from devhost.durable.store import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Commit,
    InboxEvent,
    InstanceRow,
    Store,
    WorkItem,
)

log = logging.getLogger(__name__)

_OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"
INLINE_REPLAY_EVENTS = 300
MAX_EPISODE_PACING_S = 0.1
# The event types the SDK's replay reads (clock, start, completions, events, continue-as-new,
# entity messages); it skips scheduling events and episode ends. The stored history keeps all.
REPLAY_EVENT_TYPES = frozenset(
    {
        h.EXECUTION_STARTED,
        h.TASK_COMPLETED,
        h.TASK_FAILED,
        h.SUB_COMPLETED,
        h.SUB_FAILED,
        h.TIMER_FIRED,
        h.ORCHESTRATOR_STARTED,
        14,  # EventSent
        h.EVENT_RAISED,
        h.CONTINUE_AS_NEW,
    }
)

# Action types (SDK ActionType) and the ones that consume a task id.
CALL_ACTIVITY, CALL_ACTIVITY_RETRY, CALL_SUB, CALL_SUB_RETRY, CONTINUE_AS_NEW = 0, 1, 2, 3, 4
CREATE_TIMER, WAIT_EVENT, CALL_ENTITY, CALL_HTTP, SIGNAL_ENTITY = 5, 6, 7, 8, 9
WHEN_ANY, WHEN_ALL = 11, 12
_ACTION_KIND = {
    0: "activity",
    1: "activity",
    2: "sub-orchestration",
    3: "sub-orchestration",
    4: "continue-as-new",
    5: "timer",
    7: "entity call",
    8: "HTTP call",
    9: "entity signal",
}


class EngineError(ValueError):
    """A management request the engine refuses; the message says why."""


@dataclass
class ActivitySpec:
    """An activity function as the host found it: the callable and its input parameter."""

    func: Callable[..., Any]
    input_name: str


@dataclass
class StartOutcome:
    """Result of a start request: created, or refused because the id is in use."""

    created: bool
    instance_id: str
    existing_status: str = ""


def validate_instance_id(instance_id: str) -> None:
    """Refuse ids the extension refuses (400 on the wire)."""
    if not instance_id:
        raise EngineError("instance id must not be empty")
    if len(instance_id) > 256:
        raise EngineError("instance id must be at most 256 characters")
    if instance_id.startswith("@"):
        raise EngineError(f"instance id {instance_id!r} must not start with '@'")
    bad = [c for c in instance_id if c in "/\\#?" or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise EngineError(f"instance id {instance_id!r} must not contain {bad[0]!r}")


def _new_book() -> dict:
    return {
        "next_id": 0,
        "leaves": [],  # position -> [task id, action type, name]
        "retries": {},  # first task id -> retry state
        "attempt_of": {},  # attempt task id -> first task id of its retry call
        "timer_of": {},  # hidden retry timer id -> first task id of its retry call
        "canceled": [],
        "children": {},  # task id -> child instance id
    }


def _leaves(actions: list) -> list[dict]:
    """Depth-first list of the id-consuming actions (containers opened, waits skipped)."""
    out: list[dict] = []
    for a in actions:
        t = a.get("actionType")
        if t in (WHEN_ANY, WHEN_ALL):
            out.extend(_leaves(a.get("compoundActions") or []))
        elif t != WAIT_EVENT:
            out.append(a)
    return out


def _decode_activity_input(text: str | None) -> Any:
    """What the Python worker's activity trigger converter hands to the function."""
    if text is None:
        return None
    try:
        return df_loads(text)
    except json.JSONDecodeError:
        return text


class Engine:
    """One task hub on one machine. Every method runs on the host's event loop thread."""

    def __init__(
        self,
        db_path: Path,
        orchestrators: dict[str, Callable[[str], str]],
        activities: dict[str, ActivitySpec],
        max_activities: int = 10,
        max_orchestrators: int = 8,
        hub_name: str = "TestHubName",
    ) -> None:
        self.store = Store(db_path)
        self.orchestrators = orchestrators
        self.activities = activities
        self.hub_name = hub_name
        self._max_activities = max_activities
        self._activity_pool = ThreadPoolExecutor(max_activities, thread_name_prefix="activity")
        self._orch_pool = ThreadPoolExecutor(max_orchestrators, thread_name_prefix="episode")
        self._activity_slots: asyncio.Semaphore | None = None
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._completed: list[tuple[WorkItem, dict]] = []
        self._flush_pending = False
        self._last_episode: dict[str, tuple[float, float]] = {}

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Resume every instance: re-run work in flight, arm timers (due ones fire at once)."""
        self._loop = asyncio.get_running_loop()
        self._activity_slots = asyncio.Semaphore(self._max_activities)
        work = self.store.all_work()
        for item in work:
            self._dispatch(item)
        runnable = self.store.runnable_ids()
        for iid in runnable:
            self.schedule(iid)
        if work or runnable:
            log.info(
                "durable engine resumed %d work item(s) and %d instance(s) from %s",
                len(work),
                len(runnable),
                self.store.path,
            )

    async def stop(self) -> None:
        self._stopping = True
        for handle in self._timers.values():
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._activity_pool.shutdown(wait=False, cancel_futures=True)
        self._orch_pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------ management API

    def start_instance(
        self, name: str, instance_id: str | None, input_value: Any = None
    ) -> StartOutcome:
        """Create an instance; an id that is Pending, Running or Suspended is never replaced.

        `input_value` is what the context's `input` will be: a JSON-text str, a dict or None.
        """
        if name not in self.orchestrators:
            raise EngineError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                f"function. Additional info: the known orchestrator functions are "
                f"{sorted(self.orchestrators)}."
            )
        iid = instance_id or uuid.uuid4().hex
        validate_instance_id(iid)
        row = self._new_row(name, iid, input_value)
        created, existing = self.store.create_instance(row, TERMINAL_STATUSES)
        if not created:
            log.info("start of '%s' refused: instance is %s", iid, existing)
            return StartOutcome(False, iid, existing)
        log.info("instance '%s' of %s created (Pending)", iid, name)
        self.schedule(iid)
        self._notify(iid)
        return StartOutcome(True, iid)

    def _new_row(
        self,
        name: str,
        iid: str,
        input_value: Any,
        parent: tuple[str, int, str] | None = None,
        created_time: str | None = None,
    ) -> InstanceRow:
        now = h.utcnow()
        execution_id = uuid.uuid4().hex
        input_text = None if input_value is None else json.dumps(input_value)
        started = [
            h.event(h.ORCHESTRATOR_STARTED, now),
            h.event(
                h.EXECUTION_STARTED,
                now,
                Name=name,
                Version="",
                Input=input_value if isinstance(input_value, str) else input_text,
                OrchestrationInstance={"InstanceId": iid, "ExecutionId": execution_id},
                ParentInstance=(
                    {"OrchestrationInstance": {"InstanceId": parent[0]}} if parent else None
                ),
                Tags=None,
            ),
        ]
        stamp = h.fmt(now)
        return InstanceRow(
            instance_id=iid,
            name=name,
            execution_id=execution_id,
            status="Pending",
            input=input_text,
            output=None,
            custom_status=None,
            created_time=created_time or stamp,
            last_updated_time=stamp,
            parent_instance_id=parent[0] if parent else None,
            parent_task_id=parent[1] if parent else None,
            parent_execution_id=parent[2] if parent else None,
            history=started,
            book=_new_book(),
            episodes=0,
        )

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> str:
        """Queue an EventRaised; returns "accepted", "not_found" or "gone" (instance finished)."""
        row = self.store.get(instance_id)
        if row is None:
            return "not_found"
        if row.status not in ACTIVE_STATUSES:
            return "gone"
        ev = h.event(h.EVENT_RAISED, h.utcnow(), Name=name, Input=input_text)
        self.store.post(instance_id, None, ev)
        log.info("event '%s' raised for instance '%s'", name, instance_id)
        self.schedule(instance_id)
        return "accepted"

    def terminate(self, instance_id: str, reason: str | None) -> str:
        """Terminate an active instance; returns "accepted", "not_found" or "gone"."""
        row = self.store.get(instance_id)
        if row is None:
            return "not_found"
        if row.status not in ACTIVE_STATUSES:
            return "gone"
        now = h.utcnow()
        for ev in row.history:
            ev["IsPlayed"] = True
        row.history.append(h.event(h.EXECUTION_TERMINATED, now, Input=reason))
        row.status = "Terminated"
        row.output = json.dumps(reason)
        row.last_updated_time = h.fmt(now)
        commit = Commit(instance=row, drop_inbox=True, drop_all_work=True)
        # A terminated child reports to its parent as a failure, so the parent does not hang.
        self._report_to_parent(row, commit, f"Orchestration terminated: {reason}", reason)
        self.store.commit(commit)
        self._disarm_all(instance_id)
        log.info("instance '%s' terminated: %s", instance_id, reason)
        self._after_commit(commit)
        return "accepted"

    def suspend(self, instance_id: str, reason: str | None) -> str:
        row = self.store.get(instance_id)
        if row is None:
            return "not_found"
        if row.status not in ACTIVE_STATUSES:
            return "gone"
        if row.status != "Suspended":
            row.status = "Suspended"
            row.last_updated_time = h.fmt(h.utcnow())
            self.store.update_simple(row)
            log.info("instance '%s' suspended: %s", instance_id, reason)
            self._notify(instance_id)
        return "accepted"

    def resume(self, instance_id: str, reason: str | None) -> str:
        row = self.store.get(instance_id)
        if row is None:
            return "not_found"
        if row.status not in ACTIVE_STATUSES:
            return "gone"
        if row.status == "Suspended":
            row.status = "Running" if row.episodes else "Pending"
            row.last_updated_time = h.fmt(h.utcnow())
            self.store.update_simple(row)
            log.info("instance '%s' resumed: %s", instance_id, reason)
            self.schedule(instance_id)
            self._notify(instance_id)
        return "accepted"

    def purge(self, instance_ids: list[str]) -> int:
        for iid in instance_ids:
            self._disarm_all(iid)
        n = self.store.purge(instance_ids)
        if n:
            log.info("purged %d instance(s)", n)
        return n

    def get(self, instance_id: str) -> InstanceRow | None:
        return self.store.get(instance_id)

    def status(self, instance_id: str, show_history: bool = False) -> InstanceStatus | None:
        """The instance's status object (None for an unknown id)."""
        row = self.store.get(instance_id)
        if row is None:
            return None
        return status_of(row, show_history=show_history, with_output=show_history)

    async def wait_for(self, instance_id: str, timeout_s: float) -> InstanceRow | None:
        """Wait until the instance is finished or `timeout_s` passes; return its row."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            row = self.store.get(instance_id)
            left = deadline - loop.time()
            if row is None or row.status in TERMINAL_STATUSES or left <= 0:
                return row
            fut = loop.create_future()
            self._waiters.setdefault(instance_id, []).append(fut)
            try:
                await asyncio.wait_for(fut, timeout=left)
            except TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(instance_id, [])
                if fut in waiters:
                    waiters.remove(fut)

    def _notify(self, instance_id: str) -> None:
        for fut in self._waiters.pop(instance_id, []):
            if not fut.done():
                fut.set_result(None)

    # ----------------------------------------------------------------------------- episodes

    def schedule(self, instance_id: str) -> None:
        """Run episodes for this instance until its inbox is empty (one at a time)."""
        if self._stopping:
            return
        if instance_id in self._running:
            self._dirty.add(instance_id)
            return
        self._running.add(instance_id)
        self._spawn(self._drive(instance_id))

    async def _drive(self, iid: str) -> None:
        try:
            while not self._stopping:
                await self._pace(iid)
                self._dirty.discard(iid)
                row = self.store.get(iid)
                if row is None or row.status not in ("Pending", "Running"):
                    return
                batch, stale = self._select(row, self.store.inbox(iid))
                if row.episodes and not batch:
                    if stale:
                        self.store.commit(Commit(instance=row, consumed=stale))
                    return
                started = time.monotonic()
                await self._episode(row, batch, stale)
                self._last_episode[iid] = (time.monotonic(), time.monotonic() - started)
        except Exception as exc:
            log.exception("episode of instance '%s' failed inside devhost", iid)
            self._fail_after_engine_error(iid, exc)
        finally:
            self._running.discard(iid)
            if iid in self._dirty and not self._stopping:
                self._dirty.discard(iid)
                self.schedule(iid)

    def _fail_after_engine_error(self, iid: str, exc: Exception) -> None:
        """Fail an instance whose episode devhost could not process, rather than leave it hung."""
        try:
            row = self.store.get(iid)
            if row is None or row.status not in ACTIVE_STATUSES:
                return
            commit = Commit(instance=row, drop_inbox=True)
            self._fail(row, commit, f"devhost could not run an episode: {exc!r}", h.utcnow())
            self.store.commit(commit)
            self._after_commit(commit)
        except Exception:
            log.exception("instance '%s' could not be marked failed", iid)

    async def _pace(self, iid: str) -> None:
        """Let completions gather for as long as the last episode of this instance took.

        A replay costs time in proportion to the history, and completions that arrive
        together share one replay; so an instance spends at most about half its time
        replaying (a wide fan-out), while a short replay (an event, then the next step) waits
        only a millisecond or two.
        """
        last = self._last_episode.get(iid)
        if last is None:
            return
        ended, took = last
        wait = min(ended + took - time.monotonic(), MAX_EPISODE_PACING_S)
        if wait > 0:
            await asyncio.sleep(wait)

    def _select(
        self, row: InstanceRow, inbox: list[InboxEvent]
    ) -> tuple[list[InboxEvent], list[int]]:
        """The events for the next episode and the stale ones to drop.

        Retry events (a failed attempt, a retry timer firing) go in an episode of their own:
        the SDK takes a hidden task id while handling them, and it takes it before any id
        that user code would take, only if nothing else in the episode runs user code first.
        """
        book = row.book
        canceled = set(book["canceled"])
        batch: list[InboxEvent] = []
        stale: list[int] = []
        for item in inbox:
            ev = item.event
            if item.execution_id is not None and item.execution_id != row.execution_id:
                stale.append(item.seq)
                continue
            if ev["EventType"] == h.TIMER_FIRED and ev.get("TimerId") in canceled:
                stale.append(item.seq)
                continue
            if self._is_retry_event(book, ev):
                if not batch:
                    batch.append(item)
                break
            batch.append(item)
        return batch, stale

    @staticmethod
    def _is_retry_event(book: dict, ev: dict) -> bool:
        t = ev["EventType"]
        if t in (h.TASK_FAILED, h.SUB_FAILED):
            return str(ev.get("TaskScheduledId")) in book["attempt_of"]
        if t == h.TIMER_FIRED:
            return str(ev.get("TimerId")) in book["timer_of"]
        return False

    async def _episode(self, row: InstanceRow, batch: list[InboxEvent], stale: list[int]) -> None:
        now = h.utcnow()
        if row.episodes:
            ts = h.next_episode_time(row.history, now)
            for ev in row.history:
                ev["IsPlayed"] = True
            row.history.append(h.event(h.ORCHESTRATOR_STARTED, ts))
        else:
            ts = h.parse(row.history[0]["Timestamp"])
        for item in batch:
            item.event["IsPlayed"] = False
            row.history.append(item.event)

        ctx = {
            "history": _replay_view(row.history),
            "input": json.loads(row.input) if row.input is not None else None,
            "instanceId": row.instance_id,
            "isReplaying": False,
            "parentInstanceId": row.parent_instance_id,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        }
        handle = self.orchestrators.get(row.name)
        if handle is None:
            state, error = (
                None,
                (
                    f"The function '{row.name}' doesn't exist, is disabled, or is not an "
                    "orchestrator function."
                ),
            )
        elif len(ctx["history"]) <= INLINE_REPLAY_EVENTS:
            # A short replay costs less than the hop to a worker thread and back.
            state, error = _invoke_orchestrator(handle, json.dumps(ctx))
        else:
            state, error = await asyncio.get_running_loop().run_in_executor(
                self._orch_pool, _invoke_orchestrator, handle, json.dumps(ctx)
            )

        # The instance may have been terminated, purged or restarted while the replay ran.
        current = self.store.peek(row.instance_id)
        if current is None or current[1] != row.execution_id:
            return
        if current[0] not in ACTIVE_STATUSES:
            return
        suspended = current[0] == "Suspended"

        commit = Commit(instance=row, consumed=[b.seq for b in batch] + stale)
        row.episodes += 1
        row.last_updated_time = h.fmt(now)
        if error is None:
            error = self._apply_actions(row, state, batch, ts, commit)
        if error is not None:
            self._fail(row, commit, error, ts)
        elif state.get("isDone"):
            self._finish(row, state, commit, ts)
        else:
            if row.status == "Pending":
                log.info("instance '%s' of %s running", row.instance_id, row.name)
            row.status = "Running"
            row.custom_status = _custom_status(state)
            row.history.append(h.event(h.ORCHESTRATOR_COMPLETED, ts))
        if suspended and row.status == "Running":
            row.status = "Suspended"
        self.store.commit(commit)
        self._after_commit(commit)

    def _apply_actions(
        self, row: InstanceRow, state: dict, batch: list[InboxEvent], ts, commit: Commit
    ) -> str | None:
        """Number the action leaves, write their scheduling events, plan their work.

        Returns an error message when the orchestration must fail (unknown function,
        non-determinism, an action devhost cannot run).
        """
        book = row.book
        if len(batch) == 1 and self._is_retry_event(book, batch[0].event):
            self._advance_retry(row, batch[0].event, ts, commit)
        for item in batch:
            ev = item.event
            if ev["EventType"] in (h.TASK_COMPLETED, h.SUB_COMPLETED):
                book["attempt_of"].pop(str(ev.get("TaskScheduledId")), None)

        actions = state.get("actions") or [[]]
        leaves = _leaves(actions[0] if actions and isinstance(actions[0], list) else actions)
        known = book["leaves"]
        for pos, action in enumerate(leaves):
            t = action.get("actionType")
            name = action.get("functionName") or ""
            if pos < len(known):
                task_id, old_t, old_name = known[pos]
                if (old_t, old_name) != (t, name):
                    return (
                        "Non-Deterministic workflow detected: a previous execution of this "
                        f"orchestration scheduled {_ACTION_KIND.get(old_t, old_t)} "
                        f"'{old_name}' as task {task_id}, but the replayed code now schedules "
                        f"{_ACTION_KIND.get(t, t)} '{name}' at that position."
                    )
                if t == CREATE_TIMER and action.get("isCanceled"):
                    self._cancel_timer(row, task_id, commit)
                continue
            task_id = book["next_id"]
            book["next_id"] += 1
            known.append([task_id, t, name])
            problem = self._schedule_leaf(row, action, task_id, ts, commit)
            if problem:
                return problem
        return None

    def _schedule_leaf(
        self, row: InstanceRow, action: dict, task_id: int, ts, commit: Commit
    ) -> str | None:
        t = action.get("actionType")
        book = row.book
        if t in (CALL_ACTIVITY, CALL_ACTIVITY_RETRY):
            name = action["functionName"]
            if name not in self.activities:
                return (
                    f"The function '{name}' doesn't exist, is disabled, or is not an activity "
                    f"function. Additional info: the known activity functions are "
                    f"{sorted(self.activities)}."
                )
            if t == CALL_ACTIVITY_RETRY:
                self._open_retry(book, task_id, "activity", action)
            self._schedule_activity(row, task_id, name, action.get("input"), ts, commit)
        elif t in (CALL_SUB, CALL_SUB_RETRY):
            name = action["functionName"]
            if name not in self.orchestrators:
                return (
                    f"The function '{name}' doesn't exist, is disabled, or is not an "
                    "orchestrator function. Additional info: the known orchestrator "
                    f"functions are {sorted(self.orchestrators)}."
                )
            if t == CALL_SUB_RETRY:
                self._open_retry(book, task_id, "sub", action)
            self._schedule_child(row, task_id, name, action.get("instanceId"), action, ts, commit)
        elif t == CREATE_TIMER:
            fire_at = action["fireAt"]
            row.history.append(h.event(h.TIMER_CREATED, ts, task_id, FireAt=fire_at))
            if action.get("isCanceled"):
                book["canceled"].append(task_id)
            else:
                commit.new_work.append(
                    WorkItem(row.instance_id, row.execution_id, task_id, "timer", fire_at=fire_at)
                )
        elif t == CONTINUE_AS_NEW:
            pass  # handled when the episode reports isDone
        else:
            # Limitation: durable entities and call_http are not run by devhost; the
            # orchestration fails with this message instead of hanging.
            return (
                f"devhost does not support {_ACTION_KIND.get(t, t)} actions (action type {t}); "
                "durable entities and call_http need the Azure Functions host."
            )
        return None

    @staticmethod
    def _open_retry(book: dict, task_id: int, kind: str, action: dict) -> None:
        options = action.get("retryOptions") or {}
        book["retries"][str(task_id)] = {
            "kind": kind,
            "action": action,
            "max": max(1, int(options.get("maxNumberOfAttempts", 1))),
            "interval_ms": max(0, int(options.get("firstRetryIntervalInMilliseconds", 0))),
            "attempts": 1,
            "final": False,
        }
        book["attempt_of"][str(task_id)] = str(task_id)

    def _advance_retry(self, row: InstanceRow, ev: dict, ts, commit: Commit) -> None:
        """Emit the hidden task the SDK opens for this retry event (DTFx RetryInterceptor)."""
        book = row.book
        if ev["EventType"] == h.TIMER_FIRED:
            first = book["timer_of"].pop(str(ev["TimerId"]))
            retry = book["retries"][first]
            if retry["final"]:
                return  # the back-compat timer after the last attempt: the task now fails
            attempt_id = book["next_id"]
            book["next_id"] += 1
            retry["attempts"] += 1
            book["attempt_of"][str(attempt_id)] = first
            action = retry["action"]
            log.info(
                "instance '%s': retry %d of %d for %s as task %d",
                row.instance_id,
                retry["attempts"],
                retry["max"],
                action["functionName"],
                attempt_id,
            )
            if retry["kind"] == "activity":
                self._schedule_activity(
                    row, attempt_id, action["functionName"], action.get("input"), ts, commit
                )
            else:
                self._schedule_child(
                    row,
                    attempt_id,
                    action["functionName"],
                    action.get("instanceId"),
                    action,
                    ts,
                    commit,
                )
            return
        first = book["attempt_of"].pop(str(ev["TaskScheduledId"]))
        retry = book["retries"][first]
        timer_id = book["next_id"]
        book["next_id"] += 1
        book["timer_of"][str(timer_id)] = first
        if retry["attempts"] >= retry["max"]:
            # DTFx fires this last timer at once; only when it fires does the task fail.
            retry["final"] = True
            fire_at = h.fmt(ts)
        else:
            fire_at = h.fmt(ts + timedelta(milliseconds=retry["interval_ms"]))
        row.history.append(h.event(h.TIMER_CREATED, ts, timer_id, FireAt=fire_at))
        commit.new_work.append(
            WorkItem(row.instance_id, row.execution_id, timer_id, "timer", fire_at=fire_at)
        )

    def _schedule_activity(
        self, row: InstanceRow, task_id: int, name: str, input_text, ts, commit: Commit
    ) -> None:
        row.history.append(
            h.event(h.TASK_SCHEDULED, ts, task_id, Name=name, Version=None, Input=input_text)
        )
        commit.new_work.append(
            WorkItem(row.instance_id, row.execution_id, task_id, "activity", name, input_text)
        )

    def _schedule_child(
        self,
        row: InstanceRow,
        task_id: int,
        name: str,
        child_id: str | None,
        action: dict,
        ts,
        commit: Commit,
    ) -> None:
        child_id = child_id or f"{row.instance_id}:{task_id}"
        input_text = action.get("input")
        row.history.append(
            h.event(
                h.SUB_CREATED,
                ts,
                task_id,
                Name=name,
                Version=None,
                InstanceId=child_id,
                Input=input_text,
            )
        )
        row.book["children"][str(task_id)] = child_id
        existing = self.store.get(child_id)
        if existing is not None and existing.status in ACTIVE_STATUSES:
            reason = f"An orchestration with instance id '{child_id}' is already {existing.status}."
            commit.messages.append(
                (
                    row.instance_id,
                    row.execution_id,
                    h.event(h.SUB_FAILED, ts, TaskScheduledId=task_id, Reason=reason, Details=None),
                )
            )
            return
        child = self._new_row(
            name, child_id, input_text, parent=(row.instance_id, task_id, row.execution_id)
        )
        commit.new_instances.append(child)

    def _cancel_timer(self, row: InstanceRow, task_id: int, commit: Commit) -> None:
        if task_id in row.book["canceled"]:
            return
        row.book["canceled"].append(task_id)
        commit.removed_work.append(task_id)

    def _finish(self, row: InstanceRow, state: dict, commit: Commit, ts) -> None:
        leaves = _leaves((state.get("actions") or [[]])[0])
        can = next((a for a in leaves if a.get("actionType") == CONTINUE_AS_NEW), None)
        # Work planned in the episode that ends the execution would belong to no execution.
        commit.new_work.clear()
        commit.new_instances.clear()
        if can is not None:
            self._continue_as_new(row, can, commit)
            return
        output = state.get("output")
        row.history.append(
            h.event(
                h.EXECUTION_COMPLETED,
                ts,
                row.book["next_id"],
                OrchestrationStatus=h.DTFX_STATUS["Completed"],
                Result=json.dumps(output),
            )
        )
        row.history.append(h.event(h.ORCHESTRATOR_COMPLETED, ts))
        row.status = "Completed"
        row.output = json.dumps(output)
        row.custom_status = _custom_status(state)
        # Decision: an instance completes when its function returns, even with a timer still
        # pending (Azure keeps it Running until that timer fires); pending work is dropped.
        commit.drop_all_work = True
        self._report_to_parent(row, commit, None, None)
        log.info("instance '%s' completed", row.instance_id)

    def _continue_as_new(self, row: InstanceRow, action: dict, commit: Commit) -> None:
        parent = None
        if row.parent_instance_id:
            parent = (row.parent_instance_id, row.parent_task_id, row.parent_execution_id)
        fresh = self._new_row(
            row.name, row.instance_id, action.get("input"), parent, row.created_time
        )
        fresh.status = "Running"
        commit.instance = fresh
        # Events of the old execution that the function did not use are dropped (the SDK has
        # no option to carry them over); events raised after this episode began stay queued.
        commit.drop_all_work = True
        log.info(
            "instance '%s' continued as new (execution %s)", row.instance_id, fresh.execution_id
        )

    def _fail(self, row: InstanceRow, commit: Commit, error: str, ts) -> None:
        message = f"Orchestrator function '{row.name}' failed: {error}"
        row.history.append(
            h.event(
                h.EXECUTION_COMPLETED,
                ts,
                row.book["next_id"],
                OrchestrationStatus=h.DTFX_STATUS["Failed"],
                Result=message,
                FailureDetails={"ErrorMessage": error},
            )
        )
        row.history.append(h.event(h.ORCHESTRATOR_COMPLETED, ts))
        row.status = "Failed"
        row.output = json.dumps(message)
        commit.new_work.clear()
        commit.new_instances.clear()
        commit.messages.clear()
        commit.drop_all_work = True
        self._report_to_parent(row, commit, message, error)
        log.warning("instance '%s' failed: %s", row.instance_id, error)

    def _report_to_parent(
        self, row: InstanceRow, commit: Commit, reason: str | None, details: str | None
    ) -> None:
        if not row.parent_instance_id:
            return
        now = h.utcnow()
        if reason is None:
            ev = h.event(
                h.SUB_COMPLETED, now, TaskScheduledId=row.parent_task_id, Result=row.output
            )
        else:
            ev = h.event(
                h.SUB_FAILED,
                now,
                TaskScheduledId=row.parent_task_id,
                Reason=reason,
                Details=details,
            )
        commit.messages.append((row.parent_instance_id, row.parent_execution_id, ev))

    def _after_commit(self, commit: Commit) -> None:
        row = commit.instance
        if commit.drop_all_work:
            self._disarm_all(row.instance_id)
        for task_id in commit.removed_work:
            handle = self._timers.pop((row.instance_id, task_id), None)
            if handle:
                handle.cancel()
        for item in commit.new_work:
            self._dispatch(item)
        for child in commit.new_instances:
            log.info(
                "instance '%s' created as a sub-orchestration of '%s'",
                child.instance_id,
                row.instance_id,
            )
            self.schedule(child.instance_id)
        for target, _, _ in commit.messages:
            self.schedule(target)
        if row.episodes == 0 and row.status == "Running":
            self.schedule(row.instance_id)  # the first episode of a continued-as-new execution
        if row.status in TERMINAL_STATUSES:
            self._last_episode.pop(row.instance_id, None)
        self._notify(row.instance_id)

    def _disarm_all(self, instance_id: str) -> None:
        for key in [k for k in self._timers if k[0] == instance_id]:
            self._timers.pop(key).cancel()

    # --------------------------------------------------------------------- activities, timers

    def _dispatch(self, item: WorkItem) -> None:
        if item.kind == "activity":
            self._spawn(self._run_activity(item))
        else:
            self._arm_timer(item)

    def _arm_timer(self, item: WorkItem) -> None:
        loop = asyncio.get_running_loop()
        delay = (h.parse(item.fire_at) - h.utcnow()).total_seconds()
        handle = loop.call_later(max(0.0, delay), self._fire_timer, item)
        self._timers[(item.instance_id, item.task_id)] = handle

    def _fire_timer(self, item: WorkItem) -> None:
        self._timers.pop((item.instance_id, item.task_id), None)
        log.debug("timer %d of instance '%s' fired", item.task_id, item.instance_id)
        ev = h.event(h.TIMER_FIRED, h.utcnow(), TimerId=item.task_id, FireAt=item.fire_at)
        self._complete(item, ev)

    async def _run_activity(self, item: WorkItem) -> None:
        async with self._activity_slots:
            ev = await self._call_activity(item)
        self._complete(item, ev)

    def _complete(self, item: WorkItem, ev: dict) -> None:
        """Queue a completion; all completions queued in one loop turn share one commit."""
        self._completed.append((item, ev))
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush_completions)

    def _flush_completions(self) -> None:
        self._flush_pending = False
        done, self._completed = self._completed, []
        if not done or self._stopping:
            return
        # A completion whose work row is gone (terminated, purged, continued) is dropped.
        for iid in dict.fromkeys(self.store.finish_many(done)):
            self.schedule(iid)

    async def _call_activity(self, item: WorkItem) -> dict:
        try:
            spec = self.activities.get(item.name)
            if spec is None:
                # The app changed between a crash and the restart.
                raise LookupError(f"activity function '{item.name}' is no longer in the app")
            kwargs = {spec.input_name: _decode_activity_input(item.input)}
            if inspect.iscoroutinefunction(spec.func):
                result = await spec.func(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self._activity_pool, lambda: spec.func(**kwargs)
                )
                if inspect.isawaitable(result):
                    result = await result
            text = df_dumps(result)
        except Exception as exc:
            log.warning(
                "activity %s (task %d of instance '%s') failed: %s",
                item.name,
                item.task_id,
                item.instance_id,
                exc,
                exc_info=True,
            )
            return h.event(
                h.TASK_FAILED,
                h.utcnow(),
                TaskScheduledId=item.task_id,
                Reason=f"Activity function '{item.name}' failed: {exc}",
                Details=f"{type(exc).__name__}: {exc}",
            )
        return h.event(h.TASK_COMPLETED, h.utcnow(), TaskScheduledId=item.task_id, Result=text)


def _replay_view(history: list[dict]) -> list[dict]:
    """The history as handed to the SDK: only the events its replay reads.

    The SDK parses every event's timestamp (dateutil, the bulk of a replay's cost) but reads
    only OrchestratorStarted's, as the orchestration clock; the others get just their date.
    """
    view = []
    for ev in history:
        t = ev["EventType"]
        if t not in REPLAY_EVENT_TYPES:
            continue
        if t != h.ORCHESTRATOR_STARTED:
            ev = {**ev, "Timestamp": ev["Timestamp"][:10]}
        view.append(ev)
    return view


def _custom_status(state: dict) -> str | None:
    value = state.get("customStatus")
    return None if value is None else json.dumps(value)


def _invoke_orchestrator(handle: Callable[[str], str], context_json: str):
    """Run one replay through the SDK; return (state, None) or (None, error message)."""
    try:
        return json.loads(handle(context_json)), None
    except Exception as exc:
        text = str(exc)
        if _OUT_OF_PROC_MARKER in text:
            head, data = text.split(_OUT_OF_PROC_MARKER, 1)
            try:
                return None, json.loads(data).get("error") or head
            except json.JSONDecodeError:
                return None, head
        return None, f"{type(exc).__name__}: {exc}"
