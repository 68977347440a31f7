"""Attachments read from a Blob container (Azurite), with a SAS or a connection string."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.finance.conftest import statuses


@pytest.fixture
def azurite(enterable_tmp):
    try:
        from devhost.azurite import Azurite, AzuriteUnavailable
    except ImportError as exc:
        pytest.skip(f"devhost.azurite is not available: {exc}")
    server = Azurite(enterable_tmp / "azurite-finance")
    try:
        server.start()
    except AzuriteUnavailable as exc:
        pytest.skip(f"Azurite cannot start here: {exc}")
    yield server
    server.stop()


def _upload(conn_str: str, filestore, container: str):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(conn_str)
    client = service.create_container(container)
    for path in filestore.rglob("*"):
        if path.is_file():
            client.upload_blob(str(path.relative_to(filestore)), path.read_bytes())
    return service, client


def test_blob_attachments_verify_and_a_deleted_blob_is_missing(seeded, azurite):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    db = seeded(17, moves=150, filestore=True)
    conn_str = azurite.settings()["AzureWebJobsStorage"]
    service, client = _upload(conn_str, db.filestore, "filestore")
    url = client.url

    report = db.validate(filestore=None, blob_container_url=url, blob_connection_string=conn_str)
    assert statuses(report)["attachments.missing"] == "pass"
    assert statuses(report)["attachments.checksum"] == "pass"

    aid, fname = db.one(
        "SELECT min(id), store_fname FROM ir_attachment GROUP BY store_fname HAVING count(*) = 1 "
        "ORDER BY 1 LIMIT 1"
    )
    client.delete_blob(fname)
    sas = generate_container_sas(
        service.account_name, "filestore", account_key=service.credential.account_key,
        permission=ContainerSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    report = db.validate(filestore=None, blob_container_url=f"{url}?{sas}")
    missing = report.check("attachments.missing")
    assert missing.status == "fail" and [s["attachment_id"] for s in missing.samples] == [aid]


def test_an_unreachable_container_fails_the_attachment_checks_within_seconds(seeded):
    from devhost.pg import free_port

    db = seeded(17, moves=150, filestore=True)
    url = f"http://127.0.0.1:{free_port()}/filestore?sv=x&sig=not-for-the-report"
    started = time.monotonic()
    report = db.validate(filestore=None, blob_container_url=url)
    assert time.monotonic() - started < 30
    for check_id in ("attachments.missing", "attachments.checksum"):
        check = report.check(check_id)
        assert check.status == "fail"
        assert "could not be reached" in check.detail and "refused" in check.detail
        assert "not-for-the-report" not in check.detail
