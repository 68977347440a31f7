"""The incident report: its figures, its escaping, and that the HTML renders in Chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from shared.report import build_report, gantt_svg, render_html, render_markdown

T0 = "2026-12-04T10:00:00Z"


def _report(rule_reason="Azure reports the primary PostgreSQL server unavailable."):
    status = {
        "incident_id": "prod-eu.availability.1",
        "environment": "prod-eu",
        "phase": "recovered",
        "outcome": "recovered",
        "path": "regional-outage",
        "confidence": 0.75,
        "disaster": True,
        "reasons": [rule_reason],
        "declared_by": "system",
        "declared_at": T0,
        "updated_at": "2026-12-04T10:10:00Z",
        "timeline": [{"at": T0, "what": "declared"}],
    }
    plan_result = {
        "ended_at": "2026-12-04T10:10:00Z",
        "steps": {
            "warm-secondary-pool": {
                "status": "succeeded",
                "started_at": "2026-12-04T10:00:05Z",
                "ended_at": "2026-12-04T10:03:00Z",
            },
            "approve-recovery": {
                "status": "succeeded",
                "started_at": "2026-12-04T10:00:05Z",
                "ended_at": "2026-12-04T10:02:00Z",
                "result": {"decision": "approved", "reason": "ok", "approvers": ["alice"]},
            },
            "promote-replica": {
                "status": "succeeded",
                "started_at": "2026-12-04T10:02:00Z",
                "ended_at": "2026-12-04T10:04:00Z",
                "result": {"exposure": {"seconds": 14.9, "upper_bound_seconds": 20.0}},
            },
            "validate-finance": {
                "status": "succeeded",
                "started_at": "2026-12-04T10:04:00Z",
                "ended_at": "2026-12-04T10:05:00Z",
                "result": {
                    "database": "odoo",
                    "summary": {"pass": 11, "warn": 1, "fail": 0, "skip": 0},
                    "checks": [{"id": "cron.active", "status": "warn", "count": 2, "detail": "2"}],
                },
            },
        },
    }
    approvals = [
        {
            "gate": "recovery",
            "decision": "approve",
            "approver": "alice",
            "comment": "[click me](http://evil.example) **now**",
            "decided_at": "2026-12-04T10:02:00Z",
        }
    ]
    plan = {
        "critical_path": ["approve-recovery", "promote-replica", "validate-finance"],
        "steps": [
            {"id": "warm-secondary-pool", "after": []},
            {"id": "approve-recovery", "after": []},
            {"id": "promote-replica", "after": ["approve-recovery"]},
            {"id": "validate-finance", "after": ["promote-replica"]},
        ],
    }
    return build_report(
        "prod-eu.availability.1",
        status,
        plan_result,
        plan=plan,
        approvals=approvals,
        targets={"rto_s": 3600, "rpo_s": 60},
        audit_head="ab" * 32,
        rpo={"estimated_s": 14.9, "counted_s": 15.2, "transactions_lost": 50},
    )


def test_report_measures_rto_from_declaration_to_the_end_of_the_plan():
    report = _report()
    assert report["rto"]["achieved_s"] == 600.0
    assert report["rto"]["target_s"] == 3600
    assert report["validation"]["summary"]["fail"] == 0
    assert report["audit_head"] == "ab" * 32


def test_critical_path_is_the_chain_of_steps_that_decided_the_end():
    assert _report()["critical_path"] == ["approve-recovery", "promote-replica", "validate-finance"]


def test_gantt_marks_the_critical_path():
    svg = gantt_svg(_report())
    assert svg.count('class="bar critical"') == 3
    assert 'data-step="warm-secondary-pool"' in svg


def test_text_from_outside_is_escaped_in_markdown_and_html():
    report = _report(rule_reason="<script>alert(1)</script> [link](http://x)")
    html = render_html(report)
    md = render_markdown(report)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "](http://evil.example)" not in md and "\\[click me\\]" in md


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="Chromium is not installed (apt-get install chromium)"
)
def test_report_html_renders_in_headless_chromium_with_its_chart():
    folder = Path(tempfile.mkdtemp(prefix="report-"))
    page = folder / "report.html"
    page.write_text(render_html(_report()), encoding="utf-8")
    common = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={folder / 'profile'}",
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="gantt"' in dom.stdout and "bar critical" in dom.stdout
    assert 'id="outcome">recovered<' in dom.stdout
    shot = folder / "report.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    shutil.rmtree(folder, ignore_errors=True)
