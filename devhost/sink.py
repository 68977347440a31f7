"""The message sink: where the app's notifier posts Teams cards and webhook messages locally.

`POST /.devhost/sink/{channel}` stores the JSON body with the time it arrived;
`GET /.devhost/sink` lists every channel's messages, `GET /.devhost/sink/{channel}` one channel's.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

SINK_PREFIX = "/.devhost/sink"
_CHANNEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_BODY_BYTES = 1024 * 1024


class MessageSink:
    """Messages kept in SQLite under the state dir, in arrival order."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(state_dir / "sink.sqlite"), timeout=10, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "channel TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL)"
        )

    def store(self, channel: str, body) -> dict:
        received = datetime.now(UTC).isoformat()
        cur = self.db.execute(
            "INSERT INTO messages (channel, received_at, body) VALUES (?,?,?)",
            (channel, received, json.dumps(body)),
        )
        return {"seq": cur.lastrowid, "channel": channel, "received_at": received, "body": body}

    def list(self, channel: str | None = None) -> list[dict]:
        sql = "SELECT seq, channel, received_at, body FROM messages"
        args: tuple = ()
        if channel is not None:
            sql += " WHERE channel=?"
            args = (channel,)
        rows = self.db.execute(sql + " ORDER BY seq", args).fetchall()
        return [
            {"seq": s, "channel": c, "received_at": r, "body": json.loads(b)} for s, c, r, b in rows
        ]

    def close(self) -> None:
        self.db.close()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(SINK_PREFIX, self._list_all),
            web.get(SINK_PREFIX + "/{channel}", self._list_channel),
            web.post(SINK_PREFIX + "/{channel}", self._post),
        ]

    async def _post(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if not _CHANNEL.fullmatch(channel):
            return _error(400, "channel must be 1-64 characters of letters, digits, '_', '.', '-'")
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"message is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "message body must be JSON")
        stored = self.store(channel, body)
        log.info("sink: message %s stored on channel %s", stored["seq"], channel)
        return web.json_response(
            {"seq": stored["seq"], "channel": channel, "received_at": stored["received_at"]},
            status=201,
        )

    async def _list_all(self, request: web.Request) -> web.Response:
        return web.json_response({"messages": self.list()})

    async def _list_channel(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        return web.json_response({"channel": channel, "messages": self.list(channel)})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
