"""Benchmarks: python -m drctl bench host|intake|orchestration|validation [--json]."""

import importlib

from drctl.cli import CommandError

BENCHES = {
    "host": ("drctl.benches.host", "durable engine: fan-out throughput and event-to-step latency"),
    "intake": ("drctl.benches.intake", "signals folded per second into incidents"),
    "orchestration": ("drctl.benches.orchestration", "plan execution against its critical path"),
    "validation": ("drctl.benches.validation", "finance checks against a sequential scan"),
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    for name, (module_name, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            importlib.import_module(module_name).add_arguments(p)
        except ModuleNotFoundError:
            pass


def run(args) -> int:
    if not args.bench:
        raise CommandError("name a benchmark: " + ", ".join(BENCHES))
    module_name, _ = BENCHES[args.bench]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CommandError(f"benchmark {args.bench!r} is not available: {exc}") from exc
    return module.run(args)
