"""Argument parsing for drctl: each command lives in its own module under drctl/commands/.

A command module has a one-line docstring (the help text), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so a slow or
heavy import in one command costs the others nothing.
"""

import argparse
import importlib
import json
import logging
import re
import sys

# command name -> (module, one-line help)
COMMANDS = {
    "serve": ("drctl.commands.serve", "run devhost: the Functions + Durable host, local Azure"),
    "demo": ("drctl.commands.demo", "run the main job end to end on the local default"),
    "seed": ("drctl.commands.seed", "create an Odoo-shaped finance database with realistic data"),
    "validate": ("drctl.commands.validate", "run the finance checks on a (recovered) database"),
    "token": ("drctl.commands.token", "mint a bearer token from devhost's local issuer"),
    "audit": ("drctl.commands.audit", "verify an incident's hash-chained audit trail"),
    "runbook": ("drctl.commands.runbook", "render a runbook for auditors"),
    "bench": ("drctl.commands.bench", "benchmarks: host, intake, orchestration, validation"),
}

EXIT_OK, EXIT_FAILED_RESULT, EXIT_CANNOT_RUN = 0, 1, 2


class CommandError(Exception):
    """A command could not run; the message says why. Exits 2."""


def emit_json(obj) -> None:
    """Print one JSON object on a single line (the last line of a --json run)."""
    sys.stdout.write(json.dumps(obj, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def bad_options(exc, options: dict[str, str], secret: tuple[str, ...] = ()) -> CommandError:
    """A CommandError for a model's ValidationError: each problem named by its option, without
    the library's help links; the values of ``secret`` fields are not repeated."""
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        option = options.get(field, field)
        shown = "" if field in secret else f" {error['input']!r}"
        problems.append(f"{option}{shown}: {error['msg']}")
    return CommandError("; ".join(problems))


class _Parser(argparse.ArgumentParser):
    """argparse takes a value that starts with '-' (``-infinity``) for an option; its message
    then says only that the value is missing, so it is told how to pass such a value."""

    def error(self, message: str):
        missing = re.fullmatch(r"argument (--[\w-]+)(?:/\S+)?: expected one argument", message)
        if missing:
            option = missing.group(1)
            message += f" (a value that starts with '-' is written {option}=VALUE)"
        super().error(message)


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m drctl",
        description="Disaster-recovery runbooks for Odoo finance on Azure.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the command being run is imported; the others are listed with their help.
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            _load(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_CANNOT_RUN
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The Azure SDK logs every request and response at INFO; that is wire detail (DEBUG).
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(_load(args.command).run(args) or 0)
    except CommandError as exc:
        print(f"drctl {args.command}: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            emit_json({"error": str(exc)})
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        return 130
