"""Render a runbook for auditors: steps, dependency order, gates and approvers, compensations."""

import json
from pathlib import Path

import yaml

from drctl.cli import CommandError, emit_json
from shared.plans import PlanError, build_plan, outline_plan, prestage_saved_s, topological_order
from shared.runbooks import ACTIONS, Runbook, RunbookError, condition_references, load_runbook
from shared.runbooks import references as input_references


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="runbook_command", metavar="SUBCOMMAND")
    render = sub.add_parser("render", help="render a runbook as Markdown or JSON")
    render.add_argument("name", help="a path name (regional-outage, ...) or a runbook file")
    render.add_argument("--format", choices=("md", "json"), default="md")
    render.add_argument("--json", action="store_true", help="same as --format json")
    render.add_argument(
        "--evidence", type=Path, help="JSON or YAML evidence: also build and show the plan"
    )
    render.add_argument(
        "--config", type=Path, help="JSON or YAML plan configuration (with --evidence)"
    )


def run(args) -> int:
    if args.runbook_command != "render":
        raise CommandError("name a subcommand: render")
    try:
        runbook = load_runbook(args.name)
    except RunbookError as exc:
        raise CommandError(str(exc)) from None
    plan = None
    if args.evidence or args.config:
        try:
            plan = build_plan(runbook, _read(args.evidence), _read(args.config))
        except PlanError as exc:
            raise CommandError("the plan cannot be built: " + str(exc)) from None
    document = describe(runbook, plan)
    if args.json or args.format == "json":
        emit_json(document)
    else:
        print(markdown(runbook, document))
    return 0


def _read(path: Path | None):
    if path is None:
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None


def describe(runbook: Runbook, plan=None) -> dict:
    """Everything an auditor reads, as one JSON-ready object."""
    outline = outline_plan(runbook)
    reads: set[str] = set()
    for step in runbook.steps:
        reads.update(input_references(step.inputs))
        if step.compensation:
            reads.update(input_references(step.compensation.inputs))
        if step.when:
            reads.update(condition_references(step.when))
    document = {
        "path": runbook.path,
        "version": runbook.version,
        "title": runbook.title,
        "summary": runbook.summary,
        "gates": {
            name: {
                **spec.model_dump(mode="json"),
                "steps": [s.id for s in runbook.steps if s.gate == name],
            }
            for name, spec in runbook.gates.items()
        },
        "steps": [
            {
                **step.model_dump(mode="json", exclude_none=True),
                "activity": ACTIONS[step.action].activity if step.action else None,
                "does": ACTIONS[step.action].summary if step.action else None,
            }
            for step in runbook.steps
        ],
        "order": topological_order(outline),
        "critical_path": outline.critical_path,
        "estimated_rto_s": outline.estimated_rto_s,
        "prestage_saved_s": prestage_saved_s(outline),
        "reads": sorted(r for r in reads if not r.startswith("steps.")),
    }
    if plan is not None:
        document["plan"] = plan.model_dump(mode="json")
    return document


def _cell(value) -> str:
    if value is None or value == [] or value is False:
        return ""
    if value is True:
        return "yes"
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(runbook: Runbook, doc: dict) -> str:
    """The auditor's page, from the same data as the JSON."""
    lines = [
        f"# {runbook.title}",
        "",
        f"Path `{runbook.path}`, runbook version {runbook.version}.",
        "",
        runbook.summary,
        "",
        "## Gates",
        "",
        "| gate | approvers (each role, distinct people) | at least | why | steps |",
        "|---|---|---|---|---|",
    ]
    for name, gate in doc["gates"].items():
        lines.append(
            f"| `{name}` | {_cell(gate['approvers'])} | {gate['min_approvers']} "
            f"| {_cell(gate['explain'])} | {_cell(gate['steps'])} |"
        )
    if not doc["gates"]:
        lines.append("| (none: nothing on this path needs approval) | | | | |")
    lines += [
        "",
        "## Steps",
        "",
        "| # | step | what it does | action (activity) | after | when | prestage | destructive "
        "| timeout | retry | estimate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, step in enumerate(runbook.steps, 1):
        what = (
            f"gate `{step.gate}`"
            if step.gate
            else f"`{step.action}` (`{ACTIONS[step.action].activity}`)"
        )
        retry = (
            ""
            if step.gate
            else f"{step.retry.max_attempts} x, first after {step.retry.first_interval_s:g} s"
        )
        lines.append(
            f"| {number} | `{step.id}` | {_cell(step.title)} | {what} | {_cell(step.after)} "
            f"| {_cell(step.when)} | {_cell(step.prestage)} | {_cell(step.destructive)} "
            f"| {step.timeout_s:g} s | {retry} | {step.estimate_s:g} s |"
        )
    lines += [
        "",
        "## Dependency order",
        "",
        " -> ".join(f"`{s}`" for s in doc["order"]),
        "",
        f"Critical path (every conditional step assumed to run): "
        f"{' -> '.join(f'`{s}`' for s in doc['critical_path'])}; estimated RTO "
        f"{doc['estimated_rto_s']:g} s, of which prestaging saves {doc['prestage_saved_s']:g} s.",
        "",
        "## Compensations",
        "",
        "| step | undone by | with |",
        "|---|---|---|",
    ]
    undone = [s for s in runbook.steps if s.compensation]
    for step in undone:
        comp = step.compensation
        lines.append(f"| `{step.id}` | `{comp.action}` | {_cell(json.dumps(comp.inputs))} |")
    if not undone:
        lines.append("| (none) | | |")
    lines += ["", "## Inputs of each step", ""]
    for step in runbook.steps:
        if step.inputs:
            lines.append(f"- `{step.id}`: {_cell(json.dumps(step.inputs))}")
    lines += ["", "## What the plan reads", ""]
    lines += [f"- `{name}`" for name in doc["reads"]] or ["- nothing"]
    if "plan" in doc:
        plan = doc["plan"]
        lines += ["", "## This plan", "", f"Estimated RTO {plan['estimated_rto_s']:g} s.", ""]
        lines += [f"- {d}" for d in plan["decisions"]]
    return "\n".join(lines)
