"""Validation activities: technical checks of the recovered side, and the finance checks of
``shared.finance.validate`` run on the recovered database with its DSN from Key Vault."""

from __future__ import annotations

import logging
import os

import azure.durable_functions as df

from activities.database import (
    ActivityError,
    audit,
    read_secret,
    server_address,
    write_probe,
)
from activities.traffic import frontdoor_check
from shared.finance.validate import ValidationCannotRun, ValidationReport, ValidationRequest
from shared.finance.validate import run_validation as run_finance_checks
from shared.recovery import (
    FinanceValidationRequest,
    TechnicalCheck,
    TechnicalReport,
    TechnicalValidationRequest,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()


def technical(req: TechnicalValidationRequest) -> TechnicalReport:
    """Database writable; application healthy through the front door; served by the region."""
    checks = []
    proof = write_probe(req.server, req.incident_id, req.step_id, req.connect_timeout_s)
    checks.append(
        TechnicalCheck(
            id="database.writable", status="pass" if proof.writable else "fail", detail=proof.detail
        )
    )
    url = req.frontdoor or os.environ.get("DR_FRONTDOOR_URL")
    if url:
        door = frontdoor_check(url, req.health_path, None, True, req.timeout_s)
        checks.append(
            TechnicalCheck(
                id="app.health", status="pass" if door.ok else "fail", detail=door.detail
            )
        )
        if req.region:
            same = (door.region or "").replace(" ", "").lower() == req.region.replace(
                " ", ""
            ).lower()
            checks.append(
                TechnicalCheck(
                    id="ingress.region",
                    status="pass" if same else "fail",
                    detail=f"served from {door.region or 'an unknown region'}; "
                    f"expected {req.region}",
                )
            )
    else:
        for check_id in ("app.health", "ingress.region"):
            checks.append(
                TechnicalCheck(id=check_id, status="skip", detail="no front door URL configured")
            )
    ok = all(c.status != "fail" for c in checks)
    audit(
        req.incident_id,
        req.step_id,
        "validate_technical",
        "pass" if ok else "fail",
        checks={c.id: c.status for c in checks},
    )
    return TechnicalReport(ok=ok, checks=checks)


def finance(req: FinanceValidationRequest) -> ValidationReport:
    """Run the finance checks; the DSN never leaves this function."""
    request = ValidationRequest(
        dsn=_dsn(req),
        recovery_point=req.recovery_point,
        expect_jobs_held=req.expect_jobs_held,
        companies=req.companies,
        blob_container_url=req.blob_container_url,
        filestore=req.filestore,
        statement_timeout_s=req.statement_timeout_s,
        connect_timeout_s=req.connect_timeout_s,
    )
    try:
        report = run_finance_checks(request)
    except ValidationCannotRun as exc:
        raise ActivityError(f"finance validation of {req.database} could not run: {exc}") from exc
    summary = report.summary
    audit(
        req.incident_id,
        req.step_id,
        "validate_finance",
        f"{summary.fail} fail, {summary.warn} warn, {summary.pass_} pass",
        database=report.database,
        failed=[c.id for c in report.checks if c.status == "fail"],
    )
    failed = [c.id for c in report.checks if c.status == "fail"]
    if req.strict and failed:
        raise ActivityError(
            f"strict finance validation of {report.database} failed: {', '.join(failed)}"
        )
    return report


def _dsn(req: FinanceValidationRequest) -> str:
    if req.dsn_secret is not None:
        return read_secret(req.dsn_secret)[0]
    if req.server is None:
        raise ActivityError("validate_finance needs dsn_secret or server")
    host, port = server_address(req.server)
    parts = {
        "host": host,
        "port": str(port),
        "dbname": req.database,
        "user": req.server.admin_user,
        "sslmode": req.server.sslmode,
    }
    if req.server.admin_password_secret is not None:
        parts["password"] = read_secret(req.server.admin_password_secret)[0]
    return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@bp.activity_trigger(input_name="payload", activity="validate_technical")
def validate_technical(payload: dict) -> dict:
    req = TechnicalValidationRequest.model_validate(payload)
    return technical(req).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="validate_finance")
def validate_finance(payload: dict) -> dict:
    req = FinanceValidationRequest.model_validate(payload)
    return finance(req).model_dump(mode="json", by_alias=True)
