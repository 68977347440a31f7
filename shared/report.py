"""The incident report: JSON for machines, Markdown and HTML for people.

It carries the timeline chart (an SVG Gantt of steps, gates and waits with the critical path
marked), achieved RTO and RPO against targets, the classification and its reasons, every
approval with identity and time, the validation table, and the audit trail's head hash. Every
text that came from outside (alert rule names, comments) is escaped in Markdown and HTML.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared import runtime
from shared.stores import connection_string_from_settings, storage_options

log = logging.getLogger(__name__)

REPORT_FORMATS = ("json", "md", "html")
CONTAINER = "reports"
_MIME = {"json": "application/json", "md": "text/markdown", "html": "text/html"}


def _ts(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _ts(start), _ts(end)
    return (b - a).total_seconds() if a and b else None


def achieved_critical_path(steps: list[dict[str, Any]], after: dict[str, list[str]]) -> list[str]:
    """The chain of steps that decided the end: from the last step to end, back through the
    dependency of each that ended last (the run's own critical path, not the estimate's)."""
    ended = {s["id"]: _ts(s["ended_at"]) for s in steps if _ts(s.get("ended_at"))}
    if not ended:
        return []
    current = max(ended, key=lambda sid: ended[sid])
    chain = [current]
    while True:
        before = [d for d in after.get(current, []) if d in ended]
        if not before:
            break
        current = max(before, key=lambda sid: ended[sid])
        chain.append(current)
    return list(reversed(chain))


def build_report(
    incident_id: str,
    status: dict[str, Any],
    plan_result: dict[str, Any] | None,
    *,
    plan: dict[str, Any] | None = None,
    approvals: list[dict[str, Any]],
    targets: dict[str, float],
    audit_head: str | None,
    rpo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document (JSON-ready) from the incident's final status and its plan result."""
    plan_result = plan_result or {}
    steps = []
    for step_id, record in (plan_result.get("steps") or {}).items():
        steps.append(
            {
                "id": step_id,
                "status": record.get("status"),
                "started_at": record.get("started_at"),
                "ended_at": record.get("ended_at"),
                "duration_s": _seconds(record.get("started_at"), record.get("ended_at")),
                "error": record.get("error"),
                "reason": record.get("reason"),
                "kind": "gate" if step_id in _gate_steps(plan_result) else "action",
            }
        )
    steps.sort(key=lambda s: s["started_at"] or "~")
    after = {step["id"]: list(step.get("after") or []) for step in (plan or {}).get("steps", [])}
    validation = _validation(plan_result)
    declared_at = status.get("declared_at")
    ended_at = plan_result.get("ended_at") or status.get("updated_at")
    rto_s = _seconds(declared_at, ended_at)
    phases = _phase_durations(status.get("timeline") or [], ended_at)
    return {
        "incident_id": incident_id,
        "environment": status.get("environment"),
        "phase": status.get("phase"),
        "outcome": status.get("outcome"),
        "path": status.get("path"),
        "classification": {
            "path": status.get("path"),
            "confidence": status.get("confidence"),
            "disaster": status.get("disaster"),
            "reasons": status.get("reasons") or [],
        },
        "declared_by": status.get("declared_by"),
        "declared_at": declared_at,
        "ended_at": ended_at,
        "rto": {"achieved_s": rto_s, "target_s": targets.get("rto_s"), "phases": phases},
        "rpo": {"target_s": targets.get("rpo_s"), **(rpo or {})},
        "signals": status.get("signals"),
        "steps": steps,
        "critical_path": achieved_critical_path(steps, after),
        "estimated_critical_path": (plan or {}).get("critical_path") or [],
        "gates": plan_result.get("gates") or {},
        "approvals": approvals,
        "compensations": plan_result.get("compensations") or [],
        "decisions": plan_result.get("decisions") or [],
        "validation": validation,
        "timeline": status.get("timeline") or [],
        "audit_head": audit_head,
    }


def _gate_steps(plan_result: dict[str, Any]) -> set[str]:
    out = set()
    for step_id, record in (plan_result.get("steps") or {}).items():
        result = record.get("result")
        if isinstance(result, dict) and "decision" in result and "approvers" in result:
            out.add(step_id)
        elif step_id.startswith(("approve-", "accept-", "signoff", "sign-off", "finance-sign")):
            out.add(step_id)
    return out


def _validation(plan_result: dict[str, Any]) -> dict[str, Any] | None:
    for record in (plan_result.get("steps") or {}).values():
        result = record.get("result")
        if isinstance(result, dict) and "checks" in result and "summary" in result:
            return result
        if isinstance(result, dict) and isinstance(result.get("report"), dict):
            report = result["report"]
            if "checks" in report:
                return report
    return None


def _phase_durations(timeline: list[dict[str, Any]], ended_at: Any) -> list[dict[str, Any]]:
    out = []
    for index, entry in enumerate(timeline):
        nxt = timeline[index + 1]["at"] if index + 1 < len(timeline) else ended_at
        out.append({"what": entry.get("what"), "at": entry.get("at"), "to": nxt})
    return out


# ------------------------------------------------------------------------------------------
# Rendering


def gantt_svg(report: dict[str, Any], width: int = 900) -> str:
    """An SVG Gantt chart of the steps and gates, the critical path drawn in a darker colour."""
    rows = [s for s in report["steps"] if s["started_at"] and s["ended_at"]]
    start = _ts(report.get("declared_at")) or (_ts(rows[0]["started_at"]) if rows else None)
    end = _ts(report.get("ended_at"))
    if start is None or end is None or not rows:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="400" height="40">'
            '<text x="10" y="25">no steps ran</text></svg>'
        )
    span = max((end - start).total_seconds(), 1.0)
    label_w, row_h, top = 230, 22, 30
    chart_w = width - label_w - 20
    height = top + row_h * len(rows) + 30
    critical = set(report.get("critical_path") or [])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        "<title>Timeline of steps, gates and waits</title>",
        f'<text x="{label_w}" y="18" font-size="12">0 s</text>',
        f'<text x="{width - 60}" y="18" font-size="12">{span:.0f} s</text>',
    ]
    for index, step in enumerate(rows):
        y = top + index * row_h
        x0 = label_w + chart_w * (_ts(step["started_at"]) - start).total_seconds() / span
        x1 = label_w + chart_w * (_ts(step["ended_at"]) - start).total_seconds() / span
        kind = step["kind"]
        on_path = step["id"] in critical
        colour = {
            ("gate", True): "#b45309",
            ("gate", False): "#f59e0b",
            ("action", True): "#1d4ed8",
            ("action", False): "#60a5fa",
        }[(kind, on_path)]
        if step["status"] == "failed":
            colour = "#dc2626"
        css = "bar critical" if on_path else "bar"
        parts.append(
            f'<text x="4" y="{y + 15}" font-size="12">{html.escape(step["id"])}</text>'
            f'<rect class="{css}" data-step="{html.escape(step["id"])}" x="{x0:.1f}" '
            f'y="{y + 3}" width="{max(x1 - x0, 2):.1f}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{html.escape(step['id'])}: {step['duration_s'] or 0:.1f} s, "
            f"{html.escape(str(step['status']))}</title></rect>"
        )
    legend_y = height - 8
    parts.append(
        f'<text x="4" y="{legend_y}" font-size="11">dark: critical path; amber: gates and '
        "waits; blue: actions; red: failed</text></svg>"
    )
    return "".join(parts)


# What could turn text from outside into markup: emphasis, code, links and images, tables, HTML.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>~])")


def md_escape(text: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(text if text is not None else ""))


def _fmt_s(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1f} s"


def _rpo_sentence(rpo: dict[str, Any]) -> str:
    """The data-loss figures the product knows, and the demo's count when it gave one."""
    parts = [
        f"estimated {_fmt_s(rpo.get('estimated_s'))} before promotion "
        f"(target {_fmt_s(rpo.get('target_s'))})"
    ]
    if rpo.get("basis"):
        parts.append(str(rpo["basis"]))
    if rpo.get("counted_s") is not None:
        parts.append(f"counted {_fmt_s(rpo['counted_s'])}")
    if rpo.get("transactions_lost") is not None:
        parts.append(f"{rpo['transactions_lost']} transactions lost")
    return "; ".join(parts)


def render_markdown(report: dict[str, Any]) -> str:
    rto, rpo = report["rto"], report["rpo"]
    lines = [
        f"# Incident {md_escape(report['incident_id'])}",
        "",
        f"- Environment: {md_escape(report['environment'])}",
        f"- Path: {md_escape(report['path'])}; outcome: **{md_escape(report['outcome'])}**",
        f"- Declared by {md_escape(report['declared_by'])} at {md_escape(report['declared_at'])}",
        f"- RTO achieved {_fmt_s(rto['achieved_s'])} against a target of {_fmt_s(rto['target_s'])}",
        f"- RPO: {_rpo_sentence(rpo)}",
        f"- Audit trail head hash: `{report['audit_head']}`",
        "",
        "## Classification",
        "",
    ]
    lines += [f"- {md_escape(r)}" for r in report["classification"]["reasons"]]
    lines += ["", "## Steps", "", "| step | status | start | seconds |", "|---|---|---|---|"]
    for s in report["steps"]:
        mark = " (critical)" if s["id"] in report["critical_path"] else ""
        lines.append(
            f"| {md_escape(s['id'])}{mark} | {md_escape(s['status'])} | "
            f"{md_escape(s['started_at'])} | {_fmt_s(s['duration_s'])} |"
        )
    lines += ["", "## Approvals", "", "| gate | decision | who | when | comment |"]
    lines.append("|---|---|---|---|---|")
    for a in report["approvals"]:
        lines.append(
            f"| {md_escape(a['gate'])} | {md_escape(a['decision'])} | {md_escape(a['approver'])} "
            f"| {md_escape(a['decided_at'])} | {md_escape(a.get('comment', ''))} |"
        )
    lines += ["", "## Validation", ""]
    validation = report.get("validation")
    if validation:
        lines += ["| check | status | count | detail |", "|---|---|---|---|"]
        for c in validation.get("checks", []):
            lines.append(
                f"| {md_escape(c['id'])} | {md_escape(c['status'])} | {c.get('count', 0)} | "
                f"{md_escape(c.get('detail', ''))} |"
            )
    else:
        lines.append("No finance validation ran.")
    lines += ["", "## Decisions", ""] + [f"- {md_escape(d)}" for d in report["decisions"]]
    return "\n".join(lines) + "\n"


def render_html(report: dict[str, Any]) -> str:
    e = html.escape
    rto, rpo = report["rto"], report["rpo"]
    rows = "".join(
        f"<tr><td>{e(s['id'])}{' ★' if s['id'] in report['critical_path'] else ''}</td>"
        f"<td>{e(str(s['status']))}</td><td>{e(str(s['started_at']))}</td>"
        f"<td>{_fmt_s(s['duration_s'])}</td></tr>"
        for s in report["steps"]
    )
    approvals = "".join(
        f"<tr><td>{e(a['gate'])}</td><td>{e(a['decision'])}</td><td>{e(a['approver'])}</td>"
        f"<td>{e(str(a['decided_at']))}</td><td>{e(a.get('comment', ''))}</td></tr>"
        for a in report["approvals"]
    )
    validation = report.get("validation") or {}
    checks = "".join(
        f"<tr class='{e(c['status'])}'><td>{e(c['id'])}</td><td>{e(c['status'])}</td>"
        f"<td>{c.get('count', 0)}</td><td>{e(str(c.get('detail', '')))}</td></tr>"
        for c in validation.get("checks", [])
    )
    reasons = "".join(f"<li>{e(r)}</li>" for r in report["classification"]["reasons"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Incident {e(report["incident_id"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #111; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.fail td {{ background: #fee2e2; }} tr.warn td {{ background: #fef3c7; }}
</style></head><body>
<h1>Incident {e(report["incident_id"])}</h1>
<p>Environment <b>{e(str(report["environment"]))}</b>, path <b>{e(str(report["path"]))}</b>,
outcome <b id="outcome">{e(str(report["outcome"]))}</b>.</p>
<p>RTO achieved <b>{_fmt_s(rto["achieved_s"])}</b> (target {_fmt_s(rto["target_s"])}).
RPO estimated {_fmt_s(rpo.get("estimated_s"))}, counted {_fmt_s(rpo.get("counted_s"))}
(target {_fmt_s(rpo.get("target_s"))}), transactions lost
{e(str(rpo.get("transactions_lost", "n/a")))}.</p>
<h2>Timeline</h2>
{gantt_svg(report)}
<h2>Classification</h2><ul>{reasons}</ul>
<h2>Steps</h2><table><tr><th>step</th><th>status</th><th>start</th><th>duration</th></tr>
{rows}</table>
<h2>Approvals</h2><table><tr><th>gate</th><th>decision</th><th>who</th><th>when</th>
<th>comment</th></tr>{approvals}</table>
<h2>Validation</h2><table><tr><th>check</th><th>status</th><th>count</th><th>detail</th></tr>
{checks}</table>
<p>Audit trail head hash: <code id="audit-head">{e(str(report["audit_head"]))}</code></p>
</body></html>
"""


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, default=str)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}")


# ------------------------------------------------------------------------------------------
# Storage: Blob storage (Azurite locally), and a copy in devhost's state dir


def _container():
    connection_string = connection_string_from_settings()
    service = BlobServiceClient.from_connection_string(
        connection_string, **storage_options(connection_string)
    )
    container = service.get_container_client(CONTAINER)
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    return container


def save_report(report: dict[str, Any]) -> dict[str, str]:
    """Write the three renderings; returns where each went."""
    incident_id = report["incident_id"]
    container = _container()
    paths: dict[str, str] = {}
    state_dir = os.environ.get("DR_STATE_DIR")
    folder = Path(state_dir) / "reports" / incident_id if state_dir else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for fmt in REPORT_FORMATS:
        text = render(report, fmt)
        name = f"{incident_id}/report.{fmt}"
        container.upload_blob(
            name,
            text.encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type=_MIME[fmt]),
        )
        paths[fmt] = f"blob:{CONTAINER}/{name}"
        if folder is not None:
            target = folder / f"report.{fmt}"
            target.write_text(text, encoding="utf-8")
            paths[f"{fmt}_file"] = str(target)
    return paths


def load_report(incident_id: str, fmt: str) -> str | None:
    try:
        blob = _container().download_blob(f"{incident_id}/report.{fmt}")
    except ResourceNotFoundError:
        return None
    return blob.readall().decode()


def write_report(
    incident_id: str,
    status: dict[str, Any],
    plan_result: dict[str, Any] | None = None,
    plan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather what the report needs from the stores, build it, and save it."""
    stores = runtime.stores()
    summary = stores.stores.incidents.get(incident_id)
    targets: dict[str, float] = {}
    if summary is not None:
        env = runtime.config().environment(summary.environment)
        targets = {
            "rto_s": env.tightest_rto().total_seconds(),
            "rpo_s": env.tightest_rpo().total_seconds(),
        }
    approvals = [
        {
            "gate": a.gate.value,
            "decision": a.decision.value,
            "approver": a.approver.name,
            "subject": a.approver.subject,
            "comment": a.comment,
            "decided_at": a.decided_at.isoformat(),
            "via": a.via,
        }
        for a in stores.stores.approvals.list(incident_id)
    ]
    rpo = _rpo_from(plan_result)
    report = build_report(
        incident_id,
        status,
        plan_result,
        plan=plan,
        approvals=approvals,
        targets=targets,
        audit_head=runtime.audit().head(incident_id),
        rpo=rpo,
    )
    paths = save_report(report)
    return {
        "paths": paths,
        "audit_head": report["audit_head"],
        "rto_s": report["rto"]["achieved_s"],
    }


def _rpo_from(plan_result: dict[str, Any] | None) -> dict[str, Any]:
    """The RPO the product estimated before promotion, from the evidence steps' results."""
    out: dict[str, Any] = {}
    for record in ((plan_result or {}).get("steps") or {}).values():
        result = record.get("result")
        if isinstance(result, dict) and isinstance(result.get("exposure"), dict):
            exposure = result["exposure"]
            out["estimated_s"] = exposure.get("seconds")
            out["estimated_upper_s"] = exposure.get("upper_bound_seconds")
            out["estimated_bytes"] = exposure.get("bytes")
            out["basis"] = exposure.get("reason")
    return out
