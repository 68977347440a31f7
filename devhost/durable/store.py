"""SQLite persistence of the durable engine: instances, their inboxes and their work in flight.

Every state change of an instance is one transaction, so a host killed at any moment restarts
from a consistent picture: an activity result is either in the inbox (and its work row gone) or
the work row is still there and the activity runs again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("Pending", "Running", "Suspended")
TERMINAL_STATUSES = ("Completed", "Failed", "Terminated", "Canceled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    parent_instance_id TEXT,
    parent_task_id INTEGER,
    parent_execution_id TEXT,
    history TEXT NOT NULL,
    book TEXT NOT NULL,
    episodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_created ON instances (created_time, instance_id);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, seq);
CREATE TABLE IF NOT EXISTS work (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    input TEXT,
    fire_at TEXT,
    PRIMARY KEY (instance_id, execution_id, task_id)
);
"""


@dataclass
class InstanceRow:
    """One instance as stored; `history` and `book` are decoded JSON."""

    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    parent_instance_id: str | None
    parent_task_id: int | None
    parent_execution_id: str | None
    history: list[dict]
    book: dict
    episodes: int


@dataclass
class InboxEvent:
    seq: int
    execution_id: str | None
    event: dict


@dataclass
class WorkItem:
    """An activity to run or a timer to fire, owned by one execution of one instance."""

    instance_id: str
    execution_id: str
    task_id: int
    kind: str  # "activity" or "timer"
    name: str | None = None
    input: str | None = None
    fire_at: str | None = None


@dataclass
class Commit:
    """What one episode (or one management operation) writes in a single transaction."""

    instance: InstanceRow
    consumed: list[int] = field(default_factory=list)
    drop_inbox: bool = False
    new_work: list[WorkItem] = field(default_factory=list)
    removed_work: list[int] = field(default_factory=list)
    drop_all_work: bool = False
    new_instances: list[InstanceRow] = field(default_factory=list)
    messages: list[tuple[str, str | None, dict]] = field(default_factory=list)


def _row(r: sqlite3.Row) -> InstanceRow:
    return InstanceRow(
        instance_id=r["instance_id"],
        name=r["name"],
        execution_id=r["execution_id"],
        status=r["status"],
        input=r["input"],
        output=r["output"],
        custom_status=r["custom_status"],
        created_time=r["created_time"],
        last_updated_time=r["last_updated_time"],
        parent_instance_id=r["parent_instance_id"],
        parent_task_id=r["parent_task_id"],
        parent_execution_id=r["parent_execution_id"],
        history=json.loads(r["history"]),
        book=json.loads(r["book"]),
        episodes=r["episodes"],
    )


class Store:
    """The engine's SQLite database (WAL mode); used from one thread, the host's event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The timeout bounds how long a write waits for another connection's lock.
        self.db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; only power loss can drop the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def get(self, instance_id: str) -> InstanceRow | None:
        r = self.db.execute(
            "SELECT * FROM instances WHERE instance_id=?", (instance_id,)
        ).fetchone()
        return _row(r) if r else None

    def peek(self, instance_id: str) -> tuple[str, str] | None:
        """(status, execution id) of an instance, without decoding its history."""
        r = self.db.execute(
            "SELECT status, execution_id FROM instances WHERE instance_id=?", (instance_id,)
        ).fetchone()
        return (r["status"], r["execution_id"]) if r else None

    def inbox(self, instance_id: str) -> list[InboxEvent]:
        rows = self.db.execute(
            "SELECT seq, execution_id, event FROM inbox WHERE instance_id=? ORDER BY seq",
            (instance_id,),
        ).fetchall()
        return [InboxEvent(r["seq"], r["execution_id"], json.loads(r["event"])) for r in rows]

    def has_inbox(self, instance_id: str) -> bool:
        q = "SELECT 1 FROM inbox WHERE instance_id=? LIMIT 1"
        return self.db.execute(q, (instance_id,)).fetchone() is not None

    def create_instance(self, row: InstanceRow, replaceable: tuple[str, ...]) -> tuple[bool, str]:
        """Insert `row` unless an instance with its id exists in a status not in `replaceable`.

        Decided in one transaction, so concurrent starts with one id create exactly one
        instance. Returns (created, status of the instance that blocked it or "").
        """
        self._begin()
        try:
            r = self.db.execute(
                "SELECT status FROM instances WHERE instance_id=?", (row.instance_id,)
            ).fetchone()
            if r is not None and r["status"] not in replaceable:
                self.db.execute("ROLLBACK")
                return False, r["status"]
            if r is not None:
                self._delete(row.instance_id)
            self._insert(row)
            self.db.execute("COMMIT")
            return True, ""
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _insert(self, row: InstanceRow) -> None:
        self.db.execute(
            "INSERT INTO instances VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.instance_id,
                row.name,
                row.execution_id,
                row.status,
                row.input,
                row.output,
                row.custom_status,
                row.created_time,
                row.last_updated_time,
                row.parent_instance_id,
                row.parent_task_id,
                row.parent_execution_id,
                json.dumps(row.history, separators=(",", ":")),
                json.dumps(row.book, separators=(",", ":")),
                row.episodes,
            ),
        )

    def _delete(self, instance_id: str) -> None:
        for table in ("instances", "inbox", "work"):
            self.db.execute(f"DELETE FROM {table} WHERE instance_id=?", (instance_id,))

    def commit(self, c: Commit) -> None:
        """Write one episode's outcome atomically."""
        row = c.instance
        self._begin()
        try:
            self.db.execute(
                "UPDATE instances SET name=?, execution_id=?, status=?, input=?, output=?, "
                "custom_status=?, last_updated_time=?, history=?, book=?, episodes=? "
                "WHERE instance_id=?",
                (
                    row.name,
                    row.execution_id,
                    row.status,
                    row.input,
                    row.output,
                    row.custom_status,
                    row.last_updated_time,
                    json.dumps(row.history, separators=(",", ":")),
                    json.dumps(row.book, separators=(",", ":")),
                    row.episodes,
                    row.instance_id,
                ),
            )
            if c.drop_inbox:
                self.db.execute("DELETE FROM inbox WHERE instance_id=?", (row.instance_id,))
            else:
                self.db.executemany("DELETE FROM inbox WHERE seq=?", [(s,) for s in c.consumed])
            if c.drop_all_work:
                self.db.execute("DELETE FROM work WHERE instance_id=?", (row.instance_id,))
            self.db.executemany(
                "DELETE FROM work WHERE instance_id=? AND task_id=?",
                [(row.instance_id, t) for t in c.removed_work],
            )
            self.db.executemany(
                "INSERT OR REPLACE INTO work VALUES (?,?,?,?,?,?,?)",
                [
                    (w.instance_id, w.execution_id, w.task_id, w.kind, w.name, w.input, w.fire_at)
                    for w in c.new_work
                ],
            )
            for child in c.new_instances:
                self._delete(child.instance_id)
                self._insert(child)
            self.db.executemany(
                "INSERT INTO inbox (instance_id, execution_id, event) VALUES (?,?,?)",
                [(i, e, json.dumps(ev)) for i, e, ev in c.messages],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def finish_many(self, done: list[tuple[WorkItem, dict]]) -> list[str]:
        """Replace work rows by their completion events in the owners' inboxes, in one
        transaction (group commit).

        An item whose work row is gone (the instance was terminated, purged or continued as
        new while the work ran) is skipped. Returns the owners of the items written.
        """
        accepted = []
        self._begin()
        try:
            for item, event in done:
                cur = self.db.execute(
                    "DELETE FROM work WHERE instance_id=? AND execution_id=? AND task_id=?",
                    (item.instance_id, item.execution_id, item.task_id),
                )
                if cur.rowcount == 0:
                    continue
                self.db.execute(
                    "INSERT INTO inbox (instance_id, execution_id, event) VALUES (?,?,?)",
                    (item.instance_id, item.execution_id, json.dumps(event)),
                )
                accepted.append(item.instance_id)
            self.db.execute("COMMIT")
            return accepted
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def post(self, instance_id: str, execution_id: str | None, event: dict) -> None:
        """Append one event to an instance's inbox."""
        self.db.execute(
            "INSERT INTO inbox (instance_id, execution_id, event) VALUES (?,?,?)",
            (instance_id, execution_id, json.dumps(event)),
        )

    def all_work(self) -> list[WorkItem]:
        rows = self.db.execute(
            "SELECT w.* FROM work w JOIN instances i ON i.instance_id = w.instance_id "
            "AND i.execution_id = w.execution_id WHERE i.status IN (?,?,?)",
            ACTIVE_STATUSES,
        ).fetchall()
        return [
            WorkItem(
                r["instance_id"],
                r["execution_id"],
                r["task_id"],
                r["kind"],
                r["name"],
                r["input"],
                r["fire_at"],
            )
            for r in rows
        ]

    def runnable_ids(self) -> list[str]:
        """Active instances that have inbox events or have not run their first episode."""
        rows = self.db.execute(
            "SELECT instance_id FROM instances WHERE status IN ('Pending','Running') AND "
            "(episodes = 0 OR instance_id IN (SELECT instance_id FROM inbox))"
        ).fetchall()
        return [r["instance_id"] for r in rows]

    def update_simple(self, row: InstanceRow, drop_work: bool = False) -> None:
        """Write a management change (terminate, suspend, resume) to one instance."""
        self.commit(Commit(instance=row, drop_inbox=drop_work, drop_all_work=drop_work))

    def query(
        self,
        created_from: str | None,
        created_to: str | None,
        statuses: list[str] | None,
        prefix: str | None,
        after: tuple[str, str] | None,
        limit: int | None,
    ) -> list[InstanceRow]:
        """Instances ordered by (created time, id), filtered as the list API asks."""
        where, args = [], []
        if created_from:
            where.append("created_time >= ?")
            args.append(created_from)
        if created_to:
            where.append("created_time <= ?")
            args.append(created_to)
        if statuses:
            marks = ",".join("?" * len(statuses))
            where.append(f"status IN ({marks})")
            args.extend(statuses)
        if prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(prefix), prefix])
        if after:
            where.append("(created_time > ? OR (created_time = ? AND instance_id > ?))")
            args.extend([after[0], after[0], after[1]])
        sql = "SELECT * FROM instances"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_time, instance_id"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [_row(r) for r in self.db.execute(sql, args).fetchall()]

    def purge(self, instance_ids: list[str]) -> int:
        """Delete instances with their inbox and work; return how many instances went."""
        self._begin()
        try:
            n = 0
            for iid in instance_ids:
                cur = self.db.execute("DELETE FROM instances WHERE instance_id=?", (iid,))
                n += cur.rowcount
                self.db.execute("DELETE FROM inbox WHERE instance_id=?", (iid,))
                self.db.execute("DELETE FROM work WHERE instance_id=?", (iid,))
            self.db.execute("COMMIT")
            return n
        except BaseException:
            self.db.execute("ROLLBACK")
            raise


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0
