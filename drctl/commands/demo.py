"""Run the main job end to end on the local default: break something, recover it, sign it off.

python -m drctl demo [--scenario regional-outage|database-corruption|ha-handled] [--keep] [--json]
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

from drctl.cli import EXIT_FAILED_RESULT, EXIT_OK, CommandError, emit_json

log = logging.getLogger(__name__)

SCENARIO_NAMES = ("regional-outage", "database-corruption", "ha-handled")
EXPECTED = {"regional-outage": "recovered", "database-corruption": "recovered",
            "ha-handled": "ha-handled"}  # fmt: skip


def add_arguments(parser) -> None:
    parser.add_argument("--scenario", choices=SCENARIO_NAMES, default="regional-outage")
    parser.add_argument("--keep", action="store_true", help="leave everything running to explore")
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    parser.add_argument(
        "--state-dir", default=None, help="where the demo keeps its state (.devhost/demo-SCENARIO)"
    )
    parser.add_argument("--lines", type=int, default=200_000, help="journal lines to seed")
    parser.add_argument(
        "--partition-s", type=float, default=75.0, help="how long replication is cut before"
    )
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up after this long")


def _check_programs() -> None:
    from devhost.pg import PostgresUnavailable, bin_dir

    missing = []
    try:
        bin_dir()
    except PostgresUnavailable as exc:
        missing.append(str(exc))
    if shutil.which("redis-server") is None:
        missing.append("redis-server is not installed (apt-get install redis-server)")
    if shutil.which("npm") is None or shutil.which("node") is None:
        missing.append("Node.js and npm are needed for Azurite (apt-get install nodejs npm)")
    if missing:
        raise CommandError("cannot run the demo: " + "; ".join(missing))


def run(args) -> int:
    from drctl.demo.scenarios import SCENARIOS, Options
    from drctl.demo.stack import Stack, StackError

    _check_programs()
    # One line per trickled invoice would drown the progress the demo prints.
    logging.getLogger("shared.finance").setLevel(logging.WARNING)
    state_dir = Path(args.state_dir or f".devhost/demo-{args.scenario}").resolve()
    lock = state_dir / "devhost" / "host.lock"
    if lock.exists():
        _refuse_if_running(lock)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    say = (
        (lambda text: print(text, file=sys.stderr, flush=True))
        if args.json
        else (lambda text: print(text, flush=True))
    )
    opts = Options(
        scenario=args.scenario,
        lines=args.lines,
        partition_s=args.partition_s,
        timeout_s=args.timeout_s,
        say=say,
    )
    stack = Stack(state_dir=state_dir)
    started = time.monotonic()
    say(f"starting the local stack in {state_dir} (Azurite, local Azure with PostgreSQL, Redis)")
    try:
        stack.start()
        say(f"devhost is up at {stack.url} after {time.monotonic() - started:.0f} s")
        summary = SCENARIOS[args.scenario](stack, opts)
    except StackError as exc:
        if not args.keep:
            stack.stop()
        raise CommandError(str(exc)) from exc
    except BaseException:
        if not args.keep:
            stack.stop()
        raise
    _print_summary(summary, args.scenario, say)
    if args.keep:
        pids = " ".join(str(p.pid) for p in stack.processes)
        say(f"\neverything is still running. Explore:\n"
            f"  incidents:      curl {stack.url}/api/incidents\n"
            f"  this incident:  curl {stack.url}/api/incidents/{summary['incidentId']}\n"
            f"  its report:     {summary['report_url']}\n"
            f"  messages sent:  curl {stack.url}/.devhost/sink\n"
            f"  local Azure:    state dir {state_dir}/devhost (settings.json has the endpoints)\n"
            f"stop it with:     kill {pids}")  # fmt: skip
    else:
        stack.stop()
    if args.json:
        emit_json(summary)
    return EXIT_OK if summary.get("status") == EXPECTED[args.scenario] else EXIT_FAILED_RESULT


def _refuse_if_running(lock: Path) -> None:
    import fcntl

    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise CommandError(
                f"a demo kept with --keep is still running on {lock.parent.parent}; stop it first"
            ) from None
        fcntl.flock(fh, fcntl.LOCK_UN)


def _print_summary(summary: dict, scenario: str, say) -> None:
    def fmt(value, unit="s"):
        return "n/a" if value is None else f"{value:.1f} {unit}"

    say("")
    say(f"incident {summary['incidentId']}: path {summary['path']}, status {summary['status']}")
    say(f"RTO achieved {fmt(summary['rto_s'])} (target {fmt(summary['rto_target_s'])}); "
        "time in each phase as seen from the API:")  # fmt: skip
    for phase in summary["rto_phases"]:
        say(f"  {phase['phase']:<20} {phase['seconds']:>7.1f} s")
    say(
        f"RPO estimated by the product before promotion: {fmt(summary['rpo_estimated_s'])}; "
        f"counted from the trickle: {fmt(summary['rpo_s'])}, "
        f"{summary['transactions_lost']} transactions lost (target {fmt(summary['rpo_target_s'])})"
    )
    if scenario == "regional-outage" and summary["rpo_s"] is not None:
        estimated, counted = summary["rpo_estimated_s"], summary["rpo_s"]
        if estimated is not None:
            tolerance = max(2.0, 0.1 * counted)
            verdict = "agree" if abs(estimated - counted) <= tolerance else "DISAGREE"
            say(f"  the two RPO figures {verdict} (tolerance {tolerance:.1f} s)")
    validation = summary.get("validation") or {}
    if validation:
        s = validation.get("summary", {})
        say(
            f"finance validation of {validation.get('database')}: {s.get('pass', 0)} pass, "
            f"{s.get('warn', 0)} warn, {s.get('fail', 0)} fail, {s.get('skip', 0)} skip"
        )
        for check in validation.get("checks", []):
            if check.get("status") != "pass":
                say(f"  {check['id']}: {check['status']} ({check.get('detail', '')})")
    say(f"report: {summary['report_paths'].get('html')} (and .md, .json)")
