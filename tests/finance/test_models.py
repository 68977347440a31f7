"""The report's JSON shape is the contract, whichever way it is dumped."""

from datetime import UTC, datetime

from pydantic import SecretStr

from shared.finance.models import CheckResult, Summary, ValidationReport, ValidationRequest


def test_report_dumps_summary_pass_and_round_trips():
    report = ValidationReport(
        database="odoo",
        odoo_version="17.0.1.3",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_s=1.5,
        summary=Summary(**{"pass": 11, "warn": 1, "fail": 0, "skip": 0}),
        checks=[CheckResult(id="cron.active", status="warn", count=2)],
    )
    dumped = report.model_dump(mode="json")
    assert dumped["summary"] == {"pass": 11, "warn": 1, "fail": 0, "skip": 0}
    assert dumped == report.to_json_dict()
    assert ValidationReport.model_validate(dumped) == report
    assert not report.failed


def test_the_dsn_never_shows_in_a_dump_or_repr():
    request = ValidationRequest(dsn="host=db password=hunter2 dbname=odoo")
    assert "hunter2" not in repr(request) and "hunter2" not in request.model_dump_json()
    assert isinstance(request.dsn, SecretStr)
