"""attachments.missing and attachments.checksum: each stored file is there and is what its row
says (size, sha1, and a name built from that sha1).

Files are read from the database's filestore folder or from a Blob container (``store_fname``
as blob name); rows kept in the database (``db_datas``) are checked from their bytes. Each
distinct file is read once, however many rows share it, on a small pool of threads
(``hashlib`` releases the GIL while it hashes).
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import psycopg

from shared.finance.checks import result
from shared.finance.introspect import Context, first_line
from shared.finance.models import CheckResult

log = logging.getLogger(__name__)

READ_THREADS = 4
BLOB_TIMEOUT_S = 30
# Connecting to the container: a short timeout and one retry, so that an unreachable container
# fails the checks in seconds; answers the service asks to retry (busy, throttled) get three
# retries after 1, 3 and 5 seconds (the SDK's default waits 15 s and more, per file).
BLOB_CONNECT_TIMEOUT_S = 5
BLOB_RETRY = {"retry_total": 3, "retry_connect": 1, "initial_backoff": 1, "increment_base": 2}
CHUNK = 1 << 20


class StoreUnreachable(Exception):
    """The file store cannot be reached at all; the message says where and why."""


class Store(Protocol):
    def digest(self, store_fname: str) -> tuple[int, str] | None:
        """(size, sha1 hex) of the file, or None when it does not exist."""


class FilestoreStore:
    """A filestore folder: ``<dir>/<xx>/<sha1>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def digest(self, store_fname: str) -> tuple[int, str] | None:
        # Odoo strips '.' and ':' from the relative path before joining it to the folder.
        relative = store_fname.replace(".", "").replace(":", "").lstrip("/")
        path = self.root / relative
        try:
            sha, size = hashlib.sha1(), 0
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
            return size, sha.hexdigest()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            return None


class BlobStore:
    """A Blob container, from a URL with a SAS, or a URL plus a connection string."""

    def __init__(self, url: str, connection_string: str | None) -> None:
        from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

        parts = urlsplit(url)
        self.where = parts._replace(query="").geturl()  # the SAS stays out of every message
        options = {
            "connection_timeout": BLOB_CONNECT_TIMEOUT_S,
            "retry_policy": ExponentialRetry(random_jitter_range=1, **BLOB_RETRY),
        }
        if parts.query:
            self.client = ContainerClient.from_container_url(url, **options)
        elif connection_string:
            container = parts.path.rstrip("/").rsplit("/", 1)[-1]
            if not container:
                raise ValueError(f"the blob container URL {url!r} names no container")
            service = BlobServiceClient.from_connection_string(connection_string, **options)
            self.client = service.get_container_client(container)
        else:
            # Limitation: without a SAS or a connection string there is no credential here;
            # a managed identity (DefaultAzureCredential) is not wired in yet.
            raise ValueError(
                "the blob container URL carries no SAS and no storage connection string "
                "(AzureWebJobsStorage) is set"
            )

    def digest(self, store_fname: str) -> tuple[int, str] | None:
        from azure.core.exceptions import (
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            downloader = self.client.download_blob(store_fname, timeout=BLOB_TIMEOUT_S)
            sha, size = hashlib.sha1(), 0
            for chunk in downloader.chunks():
                sha.update(chunk)
                size += len(chunk)
            return size, sha.hexdigest()
        except ResourceNotFoundError:
            return None
        except (ServiceRequestError, ServiceResponseError) as exc:
            # No answer from the service after the retries: no file can be read from it.
            raise StoreUnreachable(
                f"the blob container {self.where} could not be reached: {first_line(exc)}"
            ) from exc


def _store(ctx: Context) -> Store | None:
    req = ctx.request
    if req.filestore is not None:
        return FilestoreStore(req.filestore)
    if req.blob_container_url:
        secret = req.blob_connection_string
        return BlobStore(req.blob_container_url, secret.get_secret_value() if secret else None)
    return None


ROWS_SQL = """
SELECT id, name, res_model, res_id, store_fname, file_size, checksum,
       db_datas IS NOT NULL AS in_db
FROM ir_attachment a
WHERE a.type = 'binary' {company}
ORDER BY id
"""


def attachment_checks(ctx: Context, conn: psycopg.Connection) -> list[CheckResult]:
    started = time.monotonic()
    company = ctx.company_filter("a") if ctx.has("ir_attachment", "company_id") else ""
    with conn.cursor() as cur:
        cur.execute(ROWS_SQL.format(company=company), ctx.params)
        rows = cur.fetchall()
    on_disk = [r for r in rows if r[4] and ":" not in r[4]]
    external = [r for r in rows if r[4] and ":" in r[4]]
    in_db = [r for r in rows if not r[4]]
    store = _store(ctx)
    if on_disk and store is None:
        why = (
            f"{len(on_disk)} attachments are stored as files: give the filestore folder "
            "(--filestore) or the Blob container (--blob-container) to check them"
        )
        return [
            CheckResult(id="attachments.missing", status="skip", detail=why),
            CheckResult(id="attachments.checksum", status="skip", detail=why),
        ]
    missing: list[dict] = []
    wrong: list[dict] = []
    if on_disk:
        try:
            _check_files(on_disk, store, missing, wrong)
        except StoreUnreachable as exc:
            why = f"{exc}; none of the {len(on_disk)} attachments stored as files was checked"
            elapsed = round(time.monotonic() - started, 3)
            return [
                CheckResult(id=check_id, status="fail", detail=why, duration_s=elapsed)
                for check_id in ("attachments.missing", "attachments.checksum")
            ]
    _check_db_rows(ctx, conn, in_db, missing, wrong)
    limit = ctx.request.sample_limit
    note = f"; {len(external)} rows on custom storage (':' in store_fname) not checked"
    where = "filestore" if ctx.request.filestore else "blob container" if store else "database"
    detail_missing = (
        f"{len(missing)} of {len(rows)} binary attachments have no content "
        f"({len(on_disk)} files in the {where}, {len(in_db)} rows in the database)"
        + (note if external else "")
    )
    detail_wrong = (
        f"{len(wrong)} attachments whose content differs from their size or sha1 checksum, or "
        "whose file name is not built from the checksum"
    )
    return [
        result("attachments.missing", len(missing), missing[:limit], detail_missing, started),
        result("attachments.checksum", len(wrong), wrong[:limit], detail_wrong, started),
    ]


def _sample(row, **extra) -> dict:
    aid, name, res_model, res_id, store_fname, file_size, checksum, _ = row
    return {
        "attachment_id": aid,
        "name": name,
        "res_model": res_model,
        "res_id": res_id,
        "store_fname": store_fname,
        "checksum": checksum,
    } | extra


def _check_files(rows, store: Store, missing: list, wrong: list) -> None:
    names = sorted({r[4] for r in rows})
    # The first file alone: a store that cannot be reached says so once, not once per file.
    digests = {names[0]: store.digest(names[0])}
    pool = ThreadPoolExecutor(max_workers=READ_THREADS)
    try:
        digests.update(zip(names[1:], pool.map(store.digest, names[1:]), strict=True))
    finally:
        pool.shutdown(cancel_futures=True)
    for row in rows:
        store_fname, file_size, checksum = row[4], row[5], row[6]
        found = digests[store_fname]
        if found is None:
            missing.append(_sample(row, problem="file not found"))
            continue
        size, sha1 = found
        expected_name = f"{checksum[:2]}/{checksum}" if checksum else None
        if sha1 != checksum:
            wrong.append(_sample(row, problem="sha1 differs", actual_sha1=sha1, size=size))
        elif file_size is not None and size != file_size:
            wrong.append(_sample(row, problem="size differs", size=size, file_size=file_size))
        elif store_fname != expected_name:
            wrong.append(_sample(row, problem="file name not built from the checksum"))


def _check_db_rows(ctx: Context, conn, rows, missing: list, wrong: list) -> None:
    by_id = {r[0]: r for r in rows}
    for row in rows:
        if not row[7] and (row[5] or 0) > 0:
            missing.append(_sample(row, problem="neither a file nor database content"))
    ids = [r[0] for r in rows if r[7]]
    if not ids:
        return
    with conn.cursor(name="drctl_attachments", binary=True) as cur:
        cur.itersize = 500
        cur.execute("SELECT id, db_datas FROM ir_attachment WHERE id = ANY(%s)", (ids,))
        for aid, data in cur:
            row = by_id[aid]
            data = bytes(data)
            sha1 = hashlib.sha1(data).hexdigest()
            if sha1 != row[6]:
                wrong.append(_sample(row, problem="sha1 differs", actual_sha1=sha1))
            elif row[5] is not None and len(data) != row[5]:
                wrong.append(_sample(row, problem="size differs", size=len(data)))
