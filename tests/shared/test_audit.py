"""The audit trail against a real Azurite: concurrent appends chain; tampering is named."""

import json
import threading
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from shared.audit import GENESIS, AuditWriter, blob_name, record_hash, verify_lines


@pytest.fixture
def incident() -> str:
    return f"prod-eu.availability.{uuid.uuid4().int % 10**9}"


@pytest.fixture
def writer(storage_connection_string) -> AuditWriter:
    return AuditWriter(storage_connection_string)


def write(writer: AuditWriter, incident: str, n: int) -> list:
    return [
        writer.append(
            incident, f"step-{i}", actor="system", reason=f"step {i} because", detail={"i": i}
        )
        for i in range(1, n + 1)
    ]


def blob_lines(connection: str, incident: str) -> list[bytes]:
    blob = BlobServiceClient.from_connection_string(connection).get_blob_client(
        "audit", blob_name(incident)
    )
    return blob.download_blob().readall().splitlines()


def rewrite(connection: str, incident: str, lines: list[bytes]) -> None:
    """What a tamperer would do: replace the blob with edited content."""
    blob = BlobServiceClient.from_connection_string(connection).get_blob_client(
        "audit", blob_name(incident)
    )
    blob.delete_blob()
    blob.create_append_blob()
    blob.append_block(b"".join(line + b"\n" for line in lines))


def test_records_chain_from_genesis_and_verify(writer, incident):
    records = write(writer, incident, 3)
    assert records[0].prev == GENESIS and records[0].seq == 1
    assert records[1].prev == records[0].hash
    assert records[2].hash == record_hash(records[2].prev, records[2].body())
    report = writer.verify(incident)
    assert report.ok and report.records == 3 and report.head == records[-1].hash
    assert writer.head(incident) == records[-1].hash


def test_concurrent_appenders_keep_one_unbroken_chain(storage_connection_string, incident):
    writers = [AuditWriter(storage_connection_string) for _ in range(5)]

    def work(w: AuditWriter, who: int):
        for i in range(8):
            w.append(incident, "concurrent", actor=f"writer-{who}", detail={"i": i})

    threads = [threading.Thread(target=work, args=(w, n)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    report = writers[0].verify(incident)
    assert report.ok, report.problems
    assert report.records == 40
    assert [r.seq for r in writers[0].records(incident)] == list(range(1, 41))


def test_a_writer_that_starts_late_continues_the_chain(storage_connection_string, incident):
    write(AuditWriter(storage_connection_string), incident, 2)
    late = AuditWriter(storage_connection_string).append(incident, "late", actor="x")
    assert late.seq == 3
    assert AuditWriter(storage_connection_string).verify(incident).ok


def test_altered_record_is_named(writer, incident, storage_connection_string):
    write(writer, incident, 4)
    lines = blob_lines(storage_connection_string, incident)
    record = json.loads(lines[1])
    record["actor"] = "mallory"
    lines[1] = json.dumps(record).encode()
    rewrite(storage_connection_string, incident, lines)
    report = writer.verify(incident)
    assert not report.ok
    assert [(p.kind, p.seq, p.line) for p in report.problems] == [("altered", 2, 2)]
    assert "record 2 (line 2) was altered" in report.problems[0].detail


def test_removed_record_is_named(writer, incident, storage_connection_string):
    write(writer, incident, 4)
    lines = blob_lines(storage_connection_string, incident)
    rewrite(storage_connection_string, incident, lines[:2] + lines[3:])
    report = writer.verify(incident)
    kinds = {p.kind for p in report.problems}
    assert "removed" in kinds
    assert any("record(s) 3 are missing" in p.detail for p in report.problems)


def test_reordered_records_are_named(writer, incident, storage_connection_string):
    write(writer, incident, 4)
    lines = blob_lines(storage_connection_string, incident)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite(storage_connection_string, incident, lines)
    report = writer.verify(incident)
    assert any(p.kind == "reordered" and p.seq == 2 and p.line == 3 for p in report.problems)
    assert not any(p.kind == "removed" for p in report.problems)


def test_inserted_record_is_named_even_with_a_valid_own_hash(
    writer, incident, storage_connection_string
):
    records = write(writer, incident, 3)
    forged = records[1].model_copy(update={"actor": "mallory", "action": "approve", "hash": ""})
    forged.hash = record_hash(forged.prev, forged.body())
    lines = blob_lines(storage_connection_string, incident)
    rewrite(
        storage_connection_string,
        incident,
        [*lines[:2], forged.model_dump_json().encode(), *lines[2:]],
    )
    report = writer.verify(incident)
    assert any(p.kind == "inserted" and p.seq == 2 for p in report.problems)


def test_cut_tail_is_found_only_against_the_recorded_head(
    writer, incident, storage_connection_string
):
    records = write(writer, incident, 3)
    lines = blob_lines(storage_connection_string, incident)
    rewrite(storage_connection_string, incident, lines[:2])
    assert writer.verify(incident).ok  # the chain alone cannot tell
    report = writer.verify(incident, expected_head=records[-1].hash)
    assert [p.kind for p in report.problems] == ["head"]


def test_unreadable_line_is_named():
    report = verify_lines("prod-eu.data.1", b"{not json}\n")
    assert [(p.kind, p.line) for p in report.problems] == [("unreadable", 1)]


def test_record_of_another_incident_is_named(writer, incident, storage_connection_string):
    write(writer, incident, 1)
    lines = blob_lines(storage_connection_string, incident)
    report = verify_lines("prod-eu.data.99", b"\n".join(lines))
    assert any("belongs to incident" in p.detail for p in report.problems)


def test_empty_or_absent_trail_verifies_as_empty(writer):
    report = writer.verify("prod-eu.data.424242")
    assert report.ok and report.records == 0 and report.head is None
    assert not writer.exists("prod-eu.data.424242")
