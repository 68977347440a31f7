"""State that outlives an orchestration, in Azure Table storage (Azurite locally).

Every decision that two requests could race for is made by the storage service, never by a
read followed by a write: an insert that fails because the row exists tells the loser it lost.
That is how a signal is seen once, how exactly one request starts an incident, how an
approval is recorded once per person and gate opening, and how an action token is spent
once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel

from shared.classification import incident_id as make_incident_id
from shared.classification import split_incident_id
from shared.models import (
    ApprovalDecision,
    Evidence,
    Gate,
    IncidentSummary,
    Phase,
    Principal,
    RawRef,
    RunbookPath,
    ScenarioFamily,
    Signal,
)

log = logging.getLogger(__name__)

# Every call to storage states its limits: connect, read, and how often azure-core retries.
CLIENT_OPTIONS = {"connection_timeout": 5, "read_timeout": 20, "retry_total": 3}
# What a requests transport trusting the environment reads from it besides a CA bundle.
PROXY_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC")
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def storage_options(connection_string: str | None = None) -> dict:
    """Keyword arguments of every storage client: ``CLIENT_OPTIONS``, environment if set.

    Trusting the environment makes requests look for ``~/.netrc`` (two ``stat`` calls) and
    re-read proxy variables on every request, a tenth of a signal's intake time in a storm.
    Where no proxy or netrc variable is set there is nothing to find, so the clients skip the
    lookups and take a CA bundle variable once, here; where one is set, they read it as before.
    A bundle given as a path is checked with a ``stat`` per request, so it is passed only to
    an account reached over HTTPS (``connection_string`` without ``http://`` endpoints).
    """
    options = dict(CLIENT_OPTIONS)
    if any(os.environ.get(n) or os.environ.get(n.lower()) for n in PROXY_SETTINGS):
        return options
    options["use_env_settings"] = False
    plain = connection_string is not None and _plain_http(connection_string)
    bundle = next((os.environ[n] for n in CA_BUNDLE_SETTINGS if os.environ.get(n)), None)
    if bundle and not plain:
        options["connection_verify"] = bundle
    return options


def _plain_http(connection_string: str) -> bool:
    """Whether every endpoint of the connection string is plain HTTP (Azurite's are)."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p and p.strip())
    endpoints = [v for k, v in parts.items() if k.endswith("Endpoint")]
    if endpoints:
        return all(v.lower().startswith("http://") for v in endpoints)
    return parts.get("DefaultEndpointsProtocol", "https").lower() == "http"


MAX_START_ATTEMPTS = 20
# Table storage takes at most 100 operations in one transaction.
MAX_TRANSACTION = 100
# Index row properties naming people who declared into the incident, one per identity.
DECLARER_PREFIX = "declarer_"
# How long a process trusts what it last saw of a correlation key's open incident. Ending an
# incident in this process forgets it at once; the window only bounds what another instance
# of a scaled-out app can miss.
OPEN_INCIDENT_TTL_S = 2.0


class StoreError(RuntimeError):
    """Storage could not be reached or answered with an error; the message says which call."""


@contextmanager
def _calling(what: str) -> Iterator[None]:
    try:
        yield
    except (ResourceExistsError, ResourceNotFoundError, ResourceModifiedError):
        raise
    except AzureError as exc:
        raise StoreError(f"{what} failed: {exc.__class__.__name__}: {exc}") from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _parse(moment: str | None) -> datetime | None:
    return datetime.fromisoformat(moment) if moment else None


def _resent_once(send):
    """``send()``, sent again once when the connection was dropped before an answer came.

    azure-core retries a POST only when it could not connect: a pooled keep-alive connection
    that the service closed while idle fails the insert on its first bytes instead. That
    request was not processed, so it is sent once more on a fresh connection.
    Limitation: if a reset ever followed a processed insert, the second one finds its row and
    the caller hears "existed" (a folded signal is then answered duplicate, and not counted).
    """
    try:
        return send()
    except ServiceResponseError as exc:
        text = str(exc)
        if "Connection aborted" not in text and "reset" not in text:
            raise
        log.info("connection reset before an answer; sending once more: %s", exc)
        return send()


def _digest(text: str, length: int = 64) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# The status line of each operation's answer inside a batch response.
_PART_STATUS = re.compile(r"^HTTP/1\.1 (\d{3})", re.MULTILINE)
_INT32 = range(-(2**31), 2**31)


def _entity_json(entity: dict) -> str:
    """An entity as the JSON body of an insert, with the OData types the service needs.

    Strings, booleans, 32-bit integers and floats are plain JSON; bytes are base64
    (``Edm.Binary``), larger integers ``Edm.Int64`` strings, datetimes ``Edm.DateTime``.
    Anything else raises TypeError.
    """
    out: dict[str, object] = {}
    for name, value in entity.items():
        if value is None:
            continue
        if isinstance(value, bool | str):
            out[name] = value
        elif isinstance(value, int):
            if value in _INT32:
                out[name] = value
            else:
                out[name], out[f"{name}@odata.type"] = str(value), "Edm.Int64"
        elif isinstance(value, float):
            out[name], out[f"{name}@odata.type"] = value, "Edm.Double"
        elif isinstance(value, bytes | bytearray):
            out[name] = base64.b64encode(bytes(value)).decode("ascii")
            out[f"{name}@odata.type"] = "Edm.Binary"
        elif isinstance(value, datetime):
            stamp = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out[name], out[f"{name}@odata.type"] = stamp, "Edm.DateTime"
        else:
            raise TypeError(f"property {name!r} of type {type(value).__name__}")
    return json.dumps(out, separators=(",", ":"))


def _batch_of_creates(table_url: str, rows: list[dict]) -> tuple[bytes, str]:
    """The multipart body of one entity group transaction inserting ``rows``."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"]
    for row in rows:
        parts.append(
            f"--{changeset}\r\n"
            "Content-Type: application/http\r\n"
            "Content-Transfer-Encoding: binary\r\n\r\n"
            f"POST {table_url} HTTP/1.1\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json;odata=nometadata\r\n"
            "Prefer: return-no-content\r\n"
            "DataServiceVersion: 3.0\r\n\r\n"
            f"{_entity_json(row)}\r\n"
        )
    parts.append(f"--{changeset}--\r\n--{batch}--\r\n")
    return "".join(parts).encode("utf-8"), batch


def connection_string_from_settings(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    value = env.get("AzureWebJobsStorage")
    if not value:
        raise StoreError("AzureWebJobsStorage is not set: it names the storage account to use")
    return value


class _Table:
    """One table: its client built with it, the table created on first use.

    The table clients of one ``TableServiceClient`` share its pipeline's policies, and building
    one relinks them: a request another thread sends through a sibling client at that moment
    can meet a policy not linked yet (azure-core's ``'_SansIOHTTPPolicyRunner' object has no
    attribute 'next'``). So the client is built here, while the stores are put together and
    nothing is sent yet, and the first use only creates the table, through this client.
    Build every ``_Table`` of a service before sending through any of them.
    """

    def __init__(self, service: TableServiceClient, name: str):
        self._service = service
        self.name = name
        self._client: TableClient = service.get_table_client(name)
        self._created = False
        self._creating = threading.Lock()

    @property
    def identity(self) -> tuple[str, str]:
        """The account and table: what two ``_Table`` objects of one table have in common."""
        return (self._service.url, self.name)

    @property
    def client(self) -> TableClient:
        if not self._created:
            with self._creating:  # the first callers wait for one creation, not send several
                if not self._created:
                    self._create()
        return self._client

    def _create(self) -> None:
        try:
            with _calling(f"creating table {self.name}"):
                self._client.create_table()
        except ResourceExistsError:
            pass
        self._created = True

    def insert(self, entity: dict) -> bool:
        """Insert if absent: True when this call created the row, False when it existed."""
        try:
            with _calling(f"insert into {self.name}"):
                _resent_once(lambda: self.client.create_entity(entity))
            return True
        except ResourceExistsError:
            return False

    def insert_many(self, entities: list[dict]) -> list[bool]:
        """``insert`` for each entity; those of one partition in one transaction if they can.

        A transaction fails whole when one row exists; then each row is inserted alone, which
        says which ones were new. An entity with the key of an earlier one in the list is
        inserted alone after the others (so it finds that one there).
        """
        created: list[bool | None] = [None] * len(entities)
        groups: dict[str, list[int]] = {}
        repeats: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i, e in enumerate(entities):
            key = (e["PartitionKey"], e["RowKey"])
            if key in seen:
                repeats.append(i)  # after the first of its key: it finds that one there
                continue
            seen.add(key)
            groups.setdefault(e["PartitionKey"], []).append(i)
        for indexes in groups.values():
            for start in range(0, len(indexes), MAX_TRANSACTION):
                chunk = indexes[start : start + MAX_TRANSACTION]
                if len(chunk) > 1 and self._create_together([entities[i] for i in chunk]):
                    for i in chunk:
                        created[i] = True
                    continue
                for i in chunk:
                    created[i] = self.insert(entities[i])
        for i in repeats:
            created[i] = self.insert(entities[i])
        return [bool(c) for c in created]

    def insert_together(self, rows: list[dict]) -> bool:
        """Insert rows of one partition all or none: True when all were created, False when
        one of them existed (then nothing was written)."""
        if len({r["PartitionKey"] for r in rows}) != 1 or len(rows) > MAX_TRANSACTION:
            raise ValueError("a transaction takes 1 to 100 rows of one partition")
        if len(rows) == 1:
            return self.insert(rows[0])
        return self._create_together(rows)

    def _create_together(self, rows: list[dict]) -> bool:
        """Insert rows of one partition in one entity group transaction.

        True when every row was created, False when one existed (nothing was written).
        The body is the service's multipart batch format, written here and sent through the
        table client's own pipeline (its authentication, retries and timeouts): the SDK's
        ``submit_transaction`` builds and parses it with the ``email`` package, which costs
        about as much CPU per row as inserting the row alone.
        """
        client = self.client
        try:
            body, boundary = _batch_of_creates(
                f"{client.scheme}://{client._primary_hostname}/{client.table_name}", rows
            )
        except TypeError:  # a property type the encoder does not write: the SDK's way
            return self._create_with_sdk(rows)
        request = HttpRequest(
            "POST",
            f"{client.scheme}://{client._primary_hostname}/$batch",
            headers={
                "x-ms-version": client.api_version,
                "DataServiceVersion": "3.0",
                "MaxDataServiceVersion": "3.0;NetFx",
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                "Accept": "application/json",
            },
            content=body,
        )
        with _calling(f"insert {len(rows)} rows into {self.name}"):
            response = _resent_once(lambda: client._client.send_request(request, stream=True))
            text = response.read().decode("utf-8", "replace")
        if response.status_code != 202:
            raise StoreError(
                f"insert {len(rows)} rows into {self.name}: HTTP {response.status_code}: "
                f"{text[:300]}"
            )
        statuses = [int(code) for code in _PART_STATUS.findall(text)]
        if statuses and all(200 <= c < 300 for c in statuses) and len(statuses) == len(rows):
            return True
        if 409 in statuses:
            return False
        raise StoreError(
            f"insert {len(rows)} rows into {self.name}: the transaction answered "
            f"{statuses or 'no parts'}: {text[-300:]}"
        )

    def _create_with_sdk(self, rows: list[dict]) -> bool:
        try:
            with _calling(f"insert {len(rows)} rows into {self.name}"):
                self.client.submit_transaction([("create", r) for r in rows])
            return True
        except StoreError as exc:
            if isinstance(exc.__cause__, HttpResponseError):
                log.debug("rows of %s one by one: %s", self.name, exc)
                return False
            raise

    def get(self, partition: str, row: str) -> dict | None:
        try:
            with _calling(f"read from {self.name}"):
                return dict(self.client.get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    def partition(self, partition: str) -> list[dict]:
        with _calling(f"query {self.name}"):
            rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": partition})
            return [dict(r) for r in rows]

    def all(self) -> list[dict]:
        with _calling(f"list {self.name}"):
            return [dict(r) for r in self.client.list_entities()]

    def delete(self, partition: str, row: str) -> None:
        """Delete the row; one that is not there is not an error."""
        with _calling(f"delete from {self.name}"):
            self.client.delete_entity(partition, row)

    def merge(self, entity: dict, etag: str | None = None) -> None:
        with _calling(f"update {self.name}"):
            if etag is None:
                self.client.update_entity(entity, mode=UpdateMode.MERGE)
            else:
                self.client.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )


# ---------------------------------------------------------------------------------------


class DedupeResult(BaseModel):
    """Whether this delivery is the first of its signal, and where the first one went."""

    first: bool
    dedupe_key: str
    incident_id: str | None = None
    first_seen_at: datetime


class SignalDedupe:
    """Insert-if-absent by dedupe key: a retried delivery is recognised, not processed twice.

    A duplicate whose ``incident_id`` is None was recorded but never folded (the first
    delivery died in between); intake should fold it then, which is safe because
    ``IncidentIndex.open_or_join`` is idempotent.

    Intake keeps a signal's row in the partition of its correlation key (``partition``), so
    the signals of one storm are inserted together in one transaction; without a partition a
    row goes to one of 256 partitions by its key's digest.
    """

    def __init__(self, table: _Table):
        self.table = table

    @staticmethod
    def _keys(dedupe_key: str, partition: str | None = None) -> tuple[str, str]:
        digest = _digest(dedupe_key)
        return partition or digest[:2], digest

    def record(
        self,
        signal: Signal,
        *,
        now: datetime | None = None,
        incident_id: str | None = None,
        partition: str | None = None,
    ) -> DedupeResult:
        """Insert the signal's row; ``incident_id`` is where the caller expects it to fold.

        Writing the expected incident with the insert saves the later ``attach`` when the
        guess is right. A duplicate then names that incident even if the first delivery died
        before storing the signal there, so the caller must check the signal is stored.
        """
        return self.record_many([(signal, now or _now())], incident_id, partition)[0]

    def record_many(
        self,
        signals: list[tuple[Signal, datetime]],
        incident_id: str | None = None,
        partition: str | None = None,
    ) -> list[DedupeResult]:
        """``record`` for each (signal, time seen), rows of one partition in one transaction.

        Rows are inserted with ``_Table.insert_many``; the rows that existed (a repeated
        delivery, or a second delivery of one signal in the batch) are read back.
        """
        rows = []
        for signal, seen in signals:
            part, row = self._keys(signal.dedupe_key, partition)
            rows.append(
                {
                    "PartitionKey": part,
                    "RowKey": row,
                    "dedupe_key": signal.dedupe_key,
                    "kind": signal.kind.value,
                    "environment": signal.environment or "",
                    "raw_sha256": signal.raw.sha256 if signal.raw else "",
                    "first_seen_at": _iso(seen),
                    "incident_id": incident_id or "",
                }
            )
        created = self.table.insert_many(rows)
        results = []
        for (signal, seen), row, first in zip(signals, rows, created, strict=True):
            if first:
                results.append(
                    DedupeResult(
                        first=True,
                        dedupe_key=signal.dedupe_key,
                        incident_id=incident_id,
                        first_seen_at=seen,
                    )
                )
                continue
            existing = self.table.get(row["PartitionKey"], row["RowKey"]) or {}
            results.append(
                DedupeResult(
                    first=False,
                    dedupe_key=signal.dedupe_key,
                    incident_id=existing.get("incident_id") or None,
                    first_seen_at=_parse(existing.get("first_seen_at")) or seen,
                )
            )
        return results

    def forget(self, dedupe_key: str, partition: str | None = None) -> None:
        """Remove the signal's row: a signal that changed nothing is judged again next time."""
        self.table.delete(*self._keys(dedupe_key, partition))

    def attach(self, dedupe_key: str, incident_id: str, partition: str | None = None) -> None:
        """Remember which incident the signal folded into (answers later duplicates)."""
        part, row = self._keys(dedupe_key, partition)
        self.table.merge({"PartitionKey": part, "RowKey": row, "incident_id": incident_id})


class IncidentSlot(BaseModel):
    """The incident a signal belongs to, and whether this call started it."""

    incident: IncidentSummary
    started: bool


class IncidentIndex:
    """One row per incident: partition = correlation key, row = zero-padded generation.

    Starting generation N is inserting row N; the insert succeeds for exactly one caller.
    When the newest generation has ended, the next signal starts N+1 the same way.
    """

    # The open incident last seen per (account, table, correlation key), shared by every index
    # in the process: a storm joins its incident without reading the index per signal.
    # A key's epoch moves on whenever it is forgotten, so a read that started before an
    # incident ended cannot put the incident back as open.
    _open: dict[tuple[str, str, str], tuple[dict, float]] = {}
    _epochs: dict[tuple[str, str, str], int] = {}
    _open_lock = threading.Lock()

    def __init__(self, table: _Table):
        self.table = table

    @staticmethod
    def _row(generation: int) -> str:
        return f"{generation:06d}"

    def _epoch(self, key: str) -> int:
        with self._open_lock:
            return self._epochs.get((*self.table.identity, key), 0)

    def _remember(self, key: str, entity: dict, epoch: int) -> None:
        slot = (*self.table.identity, key)
        with self._open_lock:
            if self._epochs.get(slot, 0) == epoch:
                self._open[slot] = (entity, time.monotonic())

    def _forget(self, key: str) -> None:
        slot = (*self.table.identity, key)
        with self._open_lock:
            self._open.pop(slot, None)
            self._epochs[slot] = self._epochs.get(slot, 0) + 1

    def _cached(self, key: str) -> dict | None:
        with self._open_lock:
            hit = self._open.get((*self.table.identity, key))
        if hit is None or time.monotonic() - hit[1] > OPEN_INCIDENT_TTL_S:
            return None
        return hit[0]

    def cached_open(self, key: str) -> str | None:
        """The id of the open incident of ``key`` as this process last saw it, if recently."""
        entity = self._cached(key)
        return entity["incident_id"] if entity else None

    def _summary(self, entity: dict) -> IncidentSummary:
        return IncidentSummary(
            incident_id=entity["incident_id"],
            correlation_key=entity["PartitionKey"],
            environment=entity["environment"],
            family=ScenarioFamily(entity["family"]),
            generation=int(entity["generation"]),
            phase=Phase(entity.get("phase") or Phase.DECLARED),
            path=RunbookPath(entity["path"]) if entity.get("path") else None,
            declared_by=entity.get("declared_by") or "system",
            declarers=sorted(v for k, v in entity.items() if k.startswith(DECLARER_PREFIX)),
            started_at=_parse(entity["started_at"]),
            ended_at=_parse(entity.get("ended_at")),
            outcome=entity.get("outcome") or None,
            first_signal=entity.get("first_signal") or None,
        )

    def _latest(self, key: str) -> dict | None:
        rows = self.table.partition(key)
        return max(rows, key=lambda r: r["RowKey"]) if rows else None

    def open_or_join(
        self,
        key: str,
        *,
        environment: str,
        family: ScenarioFamily,
        declared_by: str = "system",
        first_signal: str | None = None,
        now: datetime | None = None,
    ) -> IncidentSlot:
        """Join the open incident of ``key``, or start the next generation if none is open.

        A join trusts the open incident this process saw in the last ``OPEN_INCIDENT_TTL_S``
        (its phase may be behind); starting is always decided by the conditional insert.
        """
        # Limitation: an incident ended by another instance of a scaled-out app can still be
        # joined here for up to OPEN_INCIDENT_TTL_S after it ended.
        cached = self._cached(key)
        if cached is not None:
            return IncidentSlot(incident=self._summary(cached), started=False)
        for _ in range(MAX_START_ATTEMPTS):
            epoch = self._epoch(key)
            latest = self._latest(key)
            if latest is not None and not latest.get("ended_at"):
                self._remember(key, latest, epoch)
                return IncidentSlot(incident=self._summary(latest), started=False)
            generation = int(latest["generation"]) + 1 if latest else 1
            entity = {
                "PartitionKey": key,
                "RowKey": self._row(generation),
                "incident_id": make_incident_id(key, generation),
                "environment": environment,
                "family": ScenarioFamily(family).value,
                "generation": generation,
                "phase": Phase.DECLARED.value,
                "path": "",
                "declared_by": declared_by,
                "started_at": _iso(now or _now()),
                "ended_at": "",
                "outcome": "",
                "first_signal": first_signal or "",
            }
            if self.table.insert(entity):
                log.info("incident '%s' started (generation %s)", entity["incident_id"], generation)
                self._remember(key, entity, epoch)
                return IncidentSlot(incident=self._summary(entity), started=True)
            # Another request inserted this generation first: read again and join it.
        raise StoreError(f"could not start or join an incident for {key} after many attempts")

    def get(self, incident_id: str) -> IncidentSummary | None:
        try:
            key, generation = split_incident_id(incident_id)
        except ValueError:
            return None
        entity = self.table.get(key, self._row(generation))
        return self._summary(entity) if entity else None

    def current(self, key: str) -> IncidentSummary | None:
        latest = self._latest(key)
        return self._summary(latest) if latest else None

    def list(
        self, environment: str | None = None, open_only: bool = False
    ) -> list[IncidentSummary]:
        # Limitation: listing reads the whole table; fine for the hundreds of incidents a
        # deployment sees in years, not for an unbounded history.
        rows = [self._summary(r) for r in self.table.all()]
        if environment is not None:
            rows = [r for r in rows if r.environment == environment]
        if open_only:
            rows = [r for r in rows if r.ended_at is None]
        return sorted(rows, key=lambda r: r.started_at, reverse=True)

    def update(
        self, incident_id: str, *, phase: Phase | None = None, path: RunbookPath | None = None
    ) -> None:
        """Record the phase and path the orchestration reached (for listings)."""
        key, generation = split_incident_id(incident_id)
        entity: dict = {"PartitionKey": key, "RowKey": self._row(generation)}
        if phase is not None:
            entity["phase"] = Phase(phase).value
        if path is not None:
            entity["path"] = RunbookPath(path).value
        self.table.merge(entity)
        self._forget(key)

    def add_declarer(self, incident_id: str, *identities: str) -> None:
        """Remember an operator who declared into the incident, by subject and by name.

        Each identity is a property of its own, so declarations racing for one incident each
        merge theirs without reading the row first.
        """
        # Limitation: a table entity holds 252 properties, which leaves room for about 110
        # people declaring into one incident.
        key, generation = split_incident_id(incident_id)
        entity: dict = {"PartitionKey": key, "RowKey": self._row(generation)}
        for identity in (i.strip() for i in identities if i and i.strip()):
            if identity.lower() != "system":
                entity[f"{DECLARER_PREFIX}{_digest(identity.lower(), 24)}"] = identity
        if len(entity) > 2:
            self.table.merge(entity)

    def end(
        self, incident_id: str, *, outcome: str, phase: Phase, now: datetime | None = None
    ) -> None:
        """Close the incident; the next signal of its correlation key starts a new generation."""
        key, generation = split_incident_id(incident_id)
        self._forget(key)
        self.table.merge(
            {
                "PartitionKey": key,
                "RowKey": self._row(generation),
                "ended_at": _iso(now or _now()),
                "outcome": outcome,
                "phase": Phase(phase).value,
            }
        )
        self._forget(key)
        log.info("incident '%s' ended: %s", incident_id, outcome)


class EvidenceStore:
    """Evidence rows per incident, in the order they were observed."""

    def __init__(self, table: _Table):
        self.table = table

    def add(self, incident_id: str, evidence: Evidence) -> bool:
        """Store one observation; the same observation stored twice is kept once."""
        stamp = evidence.observed_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        identity = f"{evidence.key}|{evidence.source}|{evidence.value!r}|{stamp}"
        return self.table.insert(
            {
                "PartitionKey": incident_id,
                "RowKey": f"{stamp}-{_digest(identity, 16)}",
                "body": evidence.model_dump_json(),
            }
        )

    def list(self, incident_id: str) -> list[Evidence]:
        rows = sorted(self.table.partition(incident_id), key=lambda r: r["RowKey"])
        return [Evidence.model_validate_json(r["body"]) for r in rows]


class RecordedApproval(BaseModel):
    """The decision that stands for an approver at a gate, and whether this call made it."""

    decision: ApprovalDecision
    created: bool


class ApprovalStore:
    """Approvals recorded before their event is raised, once per person and gate opening.

    The first decision of a person at an opening of a gate stands: a repeated request (a
    retry, a double click on a card) returns it unchanged with ``created`` False. A gate that
    opens again (another orchestration instance) takes a new decision from the same person.

    A person is the same person when the subject (object id) or the name (UPN) matches, so a
    decision is written together with one *claim* row per identity at that opening, in one
    entity group transaction: two requests of one person, by either route and at the same
    moment, cannot both write, and the loser finds the decision that stands in the claim.
    """

    CLAIM = "claim"

    def __init__(self, table: _Table):
        self.table = table

    @staticmethod
    def _opening(gate: Gate, instance: str | None) -> str:
        opening = f"{_digest(instance, 16)}." if instance else ""
        return f"{Gate(gate).value}.{opening}"

    @classmethod
    def _row(cls, gate: Gate, subject: str, instance: str | None = None) -> str:
        return f"{cls._opening(gate, instance)}{_digest(subject, 40)}"

    @classmethod
    def _claims(cls, decision: ApprovalDecision) -> list[str]:
        """The row keys that stand for the approver at this opening: subject, and name.

        Compared as ``shared.gates.same_person`` compares them (case-insensitively).
        """
        prefix = cls._opening(decision.gate, decision.gate_instance)
        approver = decision.approver
        identities = [("sub", (approver.subject or "").lower())]
        identities.append(("upn", (approver.name or "").strip().lower()))
        return [f"{prefix}{cls.CLAIM}.{kind}.{_digest(v, 40)}" for kind, v in identities if v]

    def record(self, decision: ApprovalDecision) -> RecordedApproval:
        """Record the decision unless the same person decided this opening already."""
        body = decision.model_dump_json()
        row = self._row(decision.gate, decision.approver.subject, decision.gate_instance)
        rows = [
            {
                "PartitionKey": decision.incident_id,
                "RowKey": row,
                "gate": decision.gate.value,
                "body": body,
            }
        ]
        for claim in self._claims(decision):
            rows.append(
                {
                    "PartitionKey": decision.incident_id,
                    "RowKey": claim,
                    "kind": self.CLAIM,
                    "gate": decision.gate.value,
                    "decision_row": row,
                    "body": body,
                }
            )
        if self.table.insert_together(rows):
            return RecordedApproval(decision=decision, created=True)
        # One of the rows existed, so nothing was written: the person's decision stands in it.
        for key in [*self._claims(decision), row]:
            existing = self.table.get(decision.incident_id, key)
            if existing is not None:
                return RecordedApproval(
                    decision=ApprovalDecision.model_validate_json(existing["body"]), created=False
                )
        raise StoreError(
            f"approval of {decision.approver.name} at the '{decision.gate.value}' gate of "
            f"{decision.incident_id} was refused as existing, and no row of it was found"
        )

    def list(self, incident_id: str, gate: Gate | None = None) -> list[ApprovalDecision]:
        rows = [r for r in self.table.partition(incident_id) if r.get("kind") != self.CLAIM]
        decisions = [ApprovalDecision.model_validate_json(r["body"]) for r in rows]
        if gate is not None:
            decisions = [d for d in decisions if d.gate == Gate(gate)]
        return sorted(decisions, key=lambda d: d.decided_at)

    def get(
        self,
        incident_id: str,
        gate: Gate,
        approver: Principal,
        instance: str | None = None,
    ) -> ApprovalDecision | None:
        entity = self.table.get(incident_id, self._row(gate, approver.subject, instance))
        return ApprovalDecision.model_validate_json(entity["body"]) if entity else None


class ActionTokenUses:
    """Spent card action tokens: the first use inserts the row, any later use finds it.

    A card sent to an approver group carries one token per decision for the whole group, so
    the relay spends it per responder (``responder``, the UPN the card answer names): each
    person of the group can use it once. Without a responder the token itself is used once.
    """

    def __init__(self, table: _Table):
        self.table = table

    @staticmethod
    def _keys(token_id: str, responder: str | None) -> tuple[str, str]:
        row = token_id if responder is None else f"{token_id}.{_digest(responder.lower(), 40)}"
        return token_id[:2] or "_", row

    def use(
        self,
        token_id: str,
        *,
        incident_id: str,
        expires_at: datetime,
        responder: str | None = None,
    ) -> bool:
        """True the first time ``token_id`` is used (by ``responder``), False ever after."""
        partition, row = self._keys(token_id, responder)
        return self.table.insert(
            {
                "PartitionKey": partition,
                "RowKey": row,
                "incident_id": incident_id,
                "expires_at": _iso(expires_at),
                "used_at": _iso(_now()),
            }
        )

    def give_back(self, token_id: str, *, responder: str | None = None) -> None:
        """Forget a use whose decision could not be stored, so the press can be repeated."""
        self.table.delete(*self._keys(token_id, responder))


class RawPayloads:
    """The exact bytes of each signal, in blob storage under their ``RawRef.blob`` name."""

    CONTAINER = "signals"

    def __init__(self, service: BlobServiceClient):
        self._container = service.get_container_client(self.CONTAINER)
        self._ready = False

    def save(self, ref: RawRef, raw: bytes) -> None:
        if not self._ready:
            try:
                with _calling("creating the signals container"):
                    self._container.create_container()
            except ResourceExistsError:
                pass
            self._ready = True
        blob_name = ref.blob.removeprefix(f"{self.CONTAINER}/")
        try:
            with _calling(f"saving {ref.blob}"):
                self._container.upload_blob(blob_name, raw, overwrite=False)
        except ResourceExistsError:
            pass  # same sha256, same bytes

    def load(self, ref: RawRef) -> bytes:
        blob_name = ref.blob.removeprefix(f"{self.CONTAINER}/")
        with _calling(f"reading {ref.blob}"):
            return self._container.download_blob(blob_name).readall()


class Stores:
    """All tables of the product on one storage account.

    ``Stores.from_settings()`` reads ``AzureWebJobsStorage``; ``prefix`` keeps the tables of
    separate test runs or task hubs apart.
    """

    def __init__(self, connection_string: str, *, prefix: str = "dr"):
        if not prefix.isalnum():
            raise ValueError(f"table prefix {prefix!r} must be letters and digits only")
        self.connection_string = connection_string
        service = TableServiceClient.from_connection_string(
            connection_string, **storage_options(connection_string)
        )
        blobs = BlobServiceClient.from_connection_string(
            connection_string, **storage_options(connection_string)
        )
        self.signals = SignalDedupe(_Table(service, f"{prefix}signals"))
        self.incidents = IncidentIndex(_Table(service, f"{prefix}incidents"))
        self.evidence = EvidenceStore(_Table(service, f"{prefix}evidence"))
        self.approvals = ApprovalStore(_Table(service, f"{prefix}approvals"))
        self.action_tokens = ActionTokenUses(_Table(service, f"{prefix}actiontokens"))
        self.raw = RawPayloads(blobs)

    @classmethod
    def from_settings(cls, env: dict[str, str] | None = None, *, prefix: str = "dr") -> Stores:
        return cls(connection_string_from_settings(env), prefix=prefix)
