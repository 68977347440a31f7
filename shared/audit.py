"""Tamper-evident audit trail: hash-chained JSON records in one append blob per incident.

Each record carries the hash of the record before it, and its own hash covers that previous
hash and the record's canonical JSON. Changing, removing, reordering or inserting a record
breaks the chain where it happened, and ``verify`` names the line. Appenders are safe to run
concurrently: each append is conditional on the blob's length (append position), so an
appender that lost a race re-reads the tail, re-links its record and tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, Field, ValidationError

from shared.stores import storage_options

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CONTAINER = "audit"
MAX_APPEND_ATTEMPTS = 50


class AuditError(RuntimeError):
    """The audit trail could not be written or read; the message says why."""


class AuditRecord(BaseModel):
    """One entry of the trail. ``hash`` = sha256(prev + "\\n" + canonical JSON of the rest)."""

    seq: int = Field(ge=1)
    time: datetime
    incident_id: str
    actor: str
    action: str
    reason: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    prev: str
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"hash"})


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(f"{prev}\n{canonical_json(body)}".encode()).hexdigest()


def blob_name(incident_id: str) -> str:
    return f"{incident_id}.jsonl"


class AuditProblem(BaseModel):
    """One break in the chain, named by line (1-based) and record number."""

    kind: str = Field(description="altered, removed, reordered, inserted, unreadable, head")
    line: int | None = None
    seq: int | None = None
    detail: str


class AuditReport(BaseModel):
    incident_id: str
    ok: bool
    records: int
    head: str | None
    problems: list[AuditProblem] = Field(default_factory=list)


class _Tail(BaseModel):
    offset: int = 0
    last_hash: str = GENESIS
    seq: int = 0


class AuditWriter:
    """Appends records to ``audit/<incident_id>.jsonl`` and verifies them.

    Built from a connection string (``AzureWebJobsStorage``) or a ``BlobServiceClient``.
    """

    def __init__(self, storage: str | BlobServiceClient, *, container: str = CONTAINER):
        if isinstance(storage, str):
            storage = BlobServiceClient.from_connection_string(storage, **storage_options(storage))
        self._container = storage.get_container_client(container)
        self._container_ready = False
        self._tails: dict[str, _Tail] = {}

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise AuditError(f"cannot create the audit container: {exc}") from exc
        self._container_ready = True

    def _blob(self, incident_id: str):
        return self._container.get_blob_client(blob_name(incident_id))

    def _read(self, incident_id: str, offset: int = 0) -> bytes:
        try:
            size = self._blob(incident_id).get_blob_properties().size
            if size <= offset:
                return b""
            return self._blob(incident_id).download_blob(offset=offset).readall()
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return b""
            raise AuditError(f"cannot read the audit trail of {incident_id}: {exc}") from exc
        except AzureError as exc:
            raise AuditError(f"cannot read the audit trail of {incident_id}: {exc}") from exc

    def _advance(self, tail: _Tail, data: bytes, incident_id: str) -> _Tail:
        """Move the cached tail over bytes other appenders wrote."""
        lines = [line for line in data.split(b"\n") if line.strip()]
        if lines:
            try:
                last = json.loads(lines[-1])
                tail = _Tail(offset=tail.offset, last_hash=str(last["hash"]), seq=int(last["seq"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditError(
                    f"the last record of {incident_id}'s audit trail is unreadable; run "
                    "verify before appending"
                ) from exc
        return _Tail(offset=tail.offset + len(data), last_hash=tail.last_hash, seq=tail.seq)

    def _create(self, incident_id: str) -> None:
        try:
            self._blob(incident_id).create_append_blob(if_none_match="*")
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code not in (409, 412):
                raise AuditError(f"cannot create the audit trail of {incident_id}: {exc}") from exc

    def append(
        self,
        incident_id: str,
        action: str,
        *,
        actor: str,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """Append one record and return it (with its sequence number and hash)."""
        # Limitation: an append blob takes at most 50,000 blocks and each record is one block,
        # so one incident's trail holds at most 50,000 records.
        self._ensure_container()
        tail = self._tails.get(incident_id)
        if tail is None:
            self._create(incident_id)
            tail = self._advance(_Tail(), self._read(incident_id), incident_id)
        for attempt in range(MAX_APPEND_ATTEMPTS):
            record = AuditRecord(
                seq=tail.seq + 1,
                time=at or datetime.now(UTC),
                incident_id=incident_id,
                actor=actor,
                action=action,
                reason=reason,
                detail=detail or {},
                prev=tail.last_hash,
            )
            record.hash = record_hash(record.prev, record.body())
            line = (canonical_json(record.model_dump(mode="json")) + "\n").encode()
            try:
                self._blob(incident_id).append_block(line, appendpos_condition=tail.offset)
            except HttpResponseError as exc:
                if exc.status_code != 412:
                    raise AuditError(
                        f"cannot append to {incident_id}'s audit trail: {exc}"
                    ) from exc
                # Someone appended first: read what they wrote, link after it, try again.
                tail = self._advance(tail, self._read(incident_id, tail.offset), incident_id)
                time.sleep(min(0.005 * attempt, 0.1))
                continue
            except AzureError as exc:
                raise AuditError(f"cannot append to {incident_id}'s audit trail: {exc}") from exc
            self._tails[incident_id] = _Tail(
                offset=tail.offset + len(line), last_hash=record.hash, seq=record.seq
            )
            log.debug("audit '%s' #%s %s by %s", incident_id, record.seq, action, actor)
            return record
        raise AuditError(
            f"could not append to {incident_id}'s audit trail after {MAX_APPEND_ATTEMPTS} "
            "attempts: too many concurrent appenders"
        )

    def exists(self, incident_id: str) -> bool:
        try:
            return self._blob(incident_id).exists()
        except AzureError as exc:
            raise AuditError(f"cannot reach the audit trail of {incident_id}: {exc}") from exc

    def records(self, incident_id: str) -> list[AuditRecord]:
        """Every readable record in blob order; unreadable lines are skipped (verify names them)."""
        out = []
        for line in self._read(incident_id).split(b"\n"):
            if line.strip():
                try:
                    out.append(AuditRecord.model_validate_json(line))
                except ValidationError:
                    continue
        return out

    def head(self, incident_id: str) -> str | None:
        """Hash of the last record: publish it elsewhere to detect a truncated trail."""
        records = self.records(incident_id)
        return records[-1].hash if records else None

    def verify(self, incident_id: str, *, expected_head: str | None = None) -> AuditReport:
        """Check the chain and name each altered, removed, reordered or inserted record.

        # Limitation: the chain alone cannot reveal records cut from the end, or a chain
        # rewritten from the first changed record on; pass the head hash kept elsewhere as
        # ``expected_head`` to catch both.
        """
        return verify_lines(incident_id, self._read(incident_id), expected_head=expected_head)


def _parse_lines(data: bytes) -> tuple[list[tuple[int, AuditRecord]], list[AuditProblem]]:
    parsed: list[tuple[int, AuditRecord]] = []
    problems: list[AuditProblem] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((number, AuditRecord.model_validate_json(line)))
        except ValidationError:
            problems.append(
                AuditProblem(
                    kind="unreadable", line=number, detail=f"line {number} is not an audit record"
                )
            )
    return parsed, problems


def verify_lines(incident_id: str, data: bytes, *, expected_head: str | None = None) -> AuditReport:
    """Verify the bytes of a trail (see ``AuditWriter.verify``)."""
    parsed, problems = _parse_lines(data)
    seen: dict[int, list[int]] = {}
    for number, record in parsed:
        seen.setdefault(record.seq, []).append(number)

    highest = max(seen, default=0)
    missing = [s for s in range(1, highest + 1) if s not in seen]
    if missing:
        problems.append(
            AuditProblem(
                kind="removed",
                seq=missing[0],
                detail=f"record(s) {_ranges(missing)} are missing: removed from the trail",
            )
        )
    for seq, lines in seen.items():
        if len(lines) > 1:
            problems.append(
                AuditProblem(
                    kind="inserted",
                    seq=seq,
                    line=lines[1],
                    detail=f"record {seq} appears {len(lines)} times (lines "
                    f"{', '.join(map(str, lines))}): a record was inserted",
                )
            )

    previous_hash, highest_so_far = GENESIS, 0
    for number, record in parsed:
        if record_hash(record.prev, record.body()) != record.hash:
            problems.append(
                AuditProblem(
                    kind="altered",
                    line=number,
                    seq=record.seq,
                    detail=f"record {record.seq} (line {number}) was altered: its content no "
                    "longer matches its hash",
                )
            )
        if record.seq < highest_so_far:
            problems.append(
                AuditProblem(
                    kind="reordered",
                    line=number,
                    seq=record.seq,
                    detail=f"record {record.seq} (line {number}) comes after record "
                    f"{highest_so_far}: the records were reordered",
                )
            )
        elif record.prev != previous_hash and record.seq == highest_so_far + 1:
            problems.append(
                AuditProblem(
                    kind="inserted",
                    line=number,
                    seq=record.seq,
                    detail=f"record {record.seq} (line {number}) does not link to the record "
                    "before it: a record was inserted or replaced there",
                )
            )
        if record.incident_id != incident_id:
            problems.append(
                AuditProblem(
                    kind="inserted",
                    line=number,
                    seq=record.seq,
                    detail=f"record {record.seq} (line {number}) belongs to incident "
                    f"{record.incident_id}, not {incident_id}",
                )
            )
        previous_hash, highest_so_far = record.hash, max(highest_so_far, record.seq)

    head = parsed[-1][1].hash if parsed else None
    if expected_head is not None and head != expected_head:
        problems.append(
            AuditProblem(
                kind="head",
                detail=f"the last record's hash {head} is not the recorded head {expected_head}: "
                "records were cut from the end or the chain was rewritten",
            )
        )
    problems.sort(key=lambda p: (p.line or 0, p.seq or 0))
    return AuditReport(
        incident_id=incident_id,
        ok=not problems,
        records=len(parsed),
        head=head,
        problems=problems,
    )


def _ranges(numbers: list[int]) -> str:
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out)
