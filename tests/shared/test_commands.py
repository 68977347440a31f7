"""drctl token and drctl audit verify, run as a user runs them."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import jwt
from azure.storage.blob import BlobServiceClient

from devhost.issuer import AUDIENCE, LocalIssuer
from shared.audit import AuditWriter, blob_name

REPO = Path(__file__).resolve().parents[2]


def drctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "drctl", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_token_prints_a_token_of_the_state_dirs_issuer(tmp_path):
    result = drctl(
        "token",
        "--user",
        "alice",
        "--roles",
        "DR.Approver,Finance.Controller",
        "--state-dir",
        str(tmp_path),
        "--ttl",
        "600",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    issuer = LocalIssuer(tmp_path)
    claims = jwt.decode(
        out["token"], issuer.key.public_key(), algorithms=["RS256"], audience=AUDIENCE
    )
    assert claims["preferred_username"] == "alice"
    assert claims["roles"] == ["DR.Approver", "Finance.Controller"]
    assert claims["exp"] - claims["iat"] == 600


def test_token_without_json_prints_only_the_token(tmp_path):
    result = drctl("token", "--user", "bob", "--state-dir", str(tmp_path))
    assert result.returncode == 0 and result.stdout.count(".") == 2


def test_token_with_unknown_role_cannot_run(tmp_path):
    result = drctl(
        "token", "--user", "bob", "--roles", "Root", "--state-dir", str(tmp_path), "--json"
    )
    assert result.returncode == 2
    assert "unknown role(s) Root" in json.loads(result.stdout.strip().splitlines()[-1])["error"]


def test_token_can_carry_the_role_the_card_relay_requires(tmp_path):
    from triggers.approvals import RELAY_ROLE

    result = drctl(
        "token", "--user", "logicapp", "--roles", RELAY_ROLE, "--state-dir", str(tmp_path), "--json"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    key = LocalIssuer(tmp_path).key.public_key()
    claims = jwt.decode(out["token"], key, algorithms=["RS256"], audience=AUDIENCE)
    assert claims["roles"] == ["DR.ApprovalRelay"]


def test_audit_verify_exit_codes_follow_the_chain(storage_connection_string):
    incident = f"prod-eu.data.{uuid.uuid4().int % 10**8}"
    writer = AuditWriter(storage_connection_string)
    for step in ("declared", "classified", "approved"):
        writer.append(incident, step, actor="system", reason=f"{step} for the test")
    env = {"AzureWebJobsStorage": storage_connection_string}

    ok = drctl("audit", "verify", incident, "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["records"] == 3

    blob = BlobServiceClient.from_connection_string(storage_connection_string).get_blob_client(
        "audit", blob_name(incident)
    )
    lines = blob.download_blob().readall().splitlines()
    lines[1] = lines[1].replace(b'"classified"', b'"ignored"')
    blob.delete_blob()
    blob.create_append_blob()
    blob.append_block(b"".join(line + b"\n" for line in lines))

    broken = drctl("audit", "verify", incident, "--json", env=env)
    assert broken.returncode == 1
    report = json.loads(broken.stdout.strip().splitlines()[-1])
    assert not report["ok"] and report["problems"][0]["kind"] == "altered"
    assert "record 2 (line 2) was altered" in broken.stdout


def test_audit_verify_of_unknown_incident_cannot_run(storage_connection_string):
    result = drctl(
        "audit",
        "verify",
        "prod-eu.data.777777",
        "--json",
        env={"AzureWebJobsStorage": storage_connection_string},
    )
    assert result.returncode == 2 and "has no audit trail" in result.stdout


def test_audit_verify_without_storage_cannot_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "drctl",
            "audit",
            "verify",
            "x.data.1",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "no storage" in result.stderr


def test_audit_verify_starts_azurite_over_a_state_dir(tmp_path):
    from devhost.azurite import Azurite

    with Azurite(tmp_path) as azurite:
        AuditWriter(azurite.settings()["AzureWebJobsStorage"]).append(
            "prod-eu.data.5", "x", actor="y"
        )
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "drctl",
            "audit",
            "verify",
            "prod-eu.data.5",
            "--state-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "1 records, chain intact" in result.stdout
