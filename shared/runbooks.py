"""Runbooks as data: the models a runbook file is validated into, the action catalogue, the loader.

A runbook is one recovery path written as steps. Each step names an action from the catalogue
below (or a gate that waits for a decision), its inputs, the steps it runs after, and what undoes
it. The plan builder (``shared.plans``) turns a runbook plus evidence plus configuration into the
plan that the executor runs; this module only knows the definitions and checks what can be checked
without evidence.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

RUNBOOK_DIR = Path(__file__).resolve().parents[1] / "runbooks"

PathName = Literal[
    "regional-outage",
    "database-corruption",
    "failed-release",
    "security-incident",
    "dependency-failure",
    "ha-handled",
]
PATH_NAMES: tuple[str, ...] = PathName.__args__

GateName = Literal["recovery", "rpo", "fence", "cutover", "signoff"]
GATE_NAMES: tuple[str, ...] = GateName.__args__

Role = Literal["DR.Operator", "DR.Approver", "Finance.Controller", "Security.Officer"]

# Durable timers on the Python runtime must stay well under six days; a step that needs longer
# is a runbook mistake, not a long operation.
MAX_TIMEOUT_S = 5 * 24 * 3600

STEP_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
REFERENCE = re.compile(r"\$\{([^}]*)\}")
REFERENCE_PATH = re.compile(r"^(evidence|config|steps)(\.[A-Za-z0-9_-]+)+$")


class RunbookError(ValueError):
    """A runbook file or definition is wrong; the message names the file, step and field."""


class ActionSpec(BaseModel):
    """One action the executor can run: the activity that does it and the inputs it needs."""

    model_config = ConfigDict(frozen=True)

    name: str
    activity: str
    summary: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    read_only: bool = False
    must_follow: tuple[str, ...] = ()


# Actions whose activity is not named after the action: isolation.lock by environment is an
# adapter over the lock activity, which takes a list of resources.
_ACTIVITY_NAMES = {"isolation.lock": "isolation_lock_environment"}


def _spec(name: str, summary: str, required=(), optional=(), **kw) -> ActionSpec:
    activity = _ACTIVITY_NAMES.get(name, name.replace(".", "_"))
    return ActionSpec(
        name=name, activity=activity, summary=summary, required=required, optional=optional, **kw
    )


_JOBS_OPTIONAL = (
    "cluster",
    "namespace",
    "deployment",
    "replicas",
    "signed_off_by",
    "timeout_s",
    "connect_timeout_s",
)
_TRAFFIC_OPTIONAL = (
    "endpoint_type",
    "disable_endpoints",
    "strategy",
    "frontdoor",
    "region",
    "health_path",
    "max_ttl_wait_s",
    "monitor_timeout_s",
    "check_timeout_s",
    "require_writable",
)

_CATALOGUE = [
    _spec(
        "db.evidence",
        "record the state of both PostgreSQL servers: reachability, role, lag, RPO exposure",
        ("primary", "replica"),
        ("earlier", "rpo_target_s", "connect_timeout_s"),
        read_only=True,
    ),
    _spec(
        "db.fence",
        "make the old primary unable to take writes (stop it, rotate the app's password, "
        "disable its endpoint) and prove it with a canary write",
        ("old_primary", "app"),
        ("endpoint", "stop_server", "stop_timeout_s", "connect_timeout_s"),
    ),
    _spec(
        "db.promote",
        "promote the read replica to a standalone writable server (Planned or Forced)",
        ("replica", "option"),
        ("reason", "app", "timeout_s", "connect_timeout_s"),
        must_follow=("db.fence",),
    ),
    _spec(
        "db.find_recovery_point",
        "find the last good point in time before the damage from the audit of changes",
        ("server",),
        ("before", "suspected_since"),
        read_only=True,
    ),
    _spec(
        "db.pitr",
        "restore a server to a point in time into a new, isolated server",
        ("source", "target_name", "point_in_time"),
        ("target_host", "target_port", "timeout_s", "connect_timeout_s"),
    ),
    _spec(
        "db.drop_server",
        "delete a server this run created (the undo of a restore)",
        ("server",),
    ),
    _spec(
        "db.forensic_backup",
        "take an on-demand backup of a server and keep it out of the retention cycle",
        ("server",),
        ("backup_name", "timeout_s"),
        read_only=True,
    ),
    _spec(
        "app.maintenance",
        "switch the Odoo deployment into or out of maintenance mode (no postings)",
        ("cluster", "deployment", "enabled"),
    ),
    _spec(
        "app.repoint_database",
        "point the Odoo deployment at another database server",
        ("cluster", "deployment", "server"),
        ("app", "db_host_secret", "health_url"),
    ),
    _spec(
        "compute.start_cluster",
        "start a stopped AKS cluster",
        ("cluster",),
        ("timeout_s",),
    ),
    _spec(
        "compute.scale_pool",
        "set the node count of an AKS node pool",
        ("cluster", "pool", "count"),
        ("timeout_s",),
    ),
    _spec(
        "compute.scale_deployment",
        "set the replica count of Kubernetes deployments and wait until they are ready",
        ("cluster",),
        ("namespace", "deployment", "replicas", "deployments", "wait_ready", "timeout_s"),
    ),
    _spec(
        "compute.restart_deployment",
        "restart the pods of a Kubernetes deployment",
        ("cluster", "deployment"),
    ),
    _spec(
        "jobs.hold",
        "hold Odoo scheduled jobs (invoice sending, payment runs) and queue workers",
        ("server", "database"),
        _JOBS_OPTIONAL,
    ),
    _spec(
        "jobs.release",
        "release Odoo scheduled jobs held by jobs.hold",
        ("server", "database"),
        _JOBS_OPTIONAL,
    ),
    _spec(
        "traffic.cutover",
        "make a Traffic Manager endpoint the one that answers, and wait until clients see it",
        ("profile", "endpoint"),
        _TRAFFIC_OPTIONAL,
    ),
    _spec(
        "traffic.check",
        "check that the front door answers from the expected region (no change)",
        ("profile", "endpoint"),
        _TRAFFIC_OPTIONAL,
        read_only=True,
    ),
    _spec(
        "traffic.reroute",
        "take an unhealthy ingress endpoint out of rotation within one region",
        ("profile", "endpoint"),
    ),
    _spec(
        "cache.flush",
        "flush the Redis cache that holds Odoo sessions and queues",
        ("redis",),
    ),
    _spec(
        "release.rollback",
        "roll a Kubernetes deployment back to its last good revision",
        ("cluster",),
        ("namespace", "deployment", "deployments", "revision", "timeout_s"),
    ),
    _spec(
        "isolation.lock",
        "isolate an environment: disable public endpoints and non-break-glass identities",
        ("environment",),
        ("scope",),
    ),
    _spec(
        "isolation.unlock",
        "undo isolation.lock",
        ("environment",),
        ("scope",),
    ),
    _spec(
        "secrets.rotate",
        "rotate secrets in Key Vault and restart their consumers",
        ("vault", "names"),
    ),
    _spec(
        "validate.technical",
        "technical checks: database writable, application health, ingress answers",
        ("server",),
        ("frontdoor", "region"),
        read_only=True,
    ),
    _spec(
        "validate.finance",
        "finance checks on a database: ledger, sequences, hash chain, attachments, jobs",
        ("server", "database"),
        (
            "recovery_point",
            "expect_jobs_held",
            "strict",
            "blob_container_url",
            "filestore",
            "companies",
        ),
        read_only=True,
    ),
    _spec(
        "dependency.storage_failover",
        "switch the attachment store to its secondary endpoint",
        ("account",),
    ),
    _spec(
        "dependency.storage_failback",
        "switch the attachment store back to its primary endpoint",
        ("account",),
    ),
    _spec(
        "dependency.pause_integration",
        "pause an integration queue (bank, tax, identity) so nothing is sent twice",
        ("integration",),
    ),
    _spec(
        "dependency.resume_integration",
        "resume an integration queue paused by dependency.pause_integration",
        ("integration",),
    ),
    _spec(
        "dependency.check",
        "probe a dependency (Redis, storage, identity, DNS, bank, tax) and report its health",
        ("dependency",),
        read_only=True,
    ),
]

ACTIONS: dict[str, ActionSpec] = {spec.name: spec for spec in _CATALOGUE}

# Action name -> activity function name. The activities are registered under these names.
ACTIVITY_FOR_ACTION: dict[str, str] = {spec.name: spec.activity for spec in _CATALOGUE}

# Rules each path must keep, whatever its file says. They are the table in the architecture page
# turned into checks, so a runbook edit cannot quietly drop them.
PATH_FORBIDDEN_ACTIONS: dict[str, frozenset[str]] = {
    "regional-outage": frozenset({"db.pitr"}),
    "database-corruption": frozenset({"db.promote"}),
    "failed-release": frozenset({"db.promote", "db.pitr"}),
    "security-incident": frozenset({"db.promote"}),
    "dependency-failure": frozenset({"db.promote", "db.pitr", "traffic.cutover"}),
    "ha-handled": frozenset({"db.promote", "db.pitr", "traffic.cutover", "db.fence"}),
}
PATH_REQUIRED_GATE_ROLES: dict[str, dict[str, frozenset[str]]] = {
    "security-incident": {"recovery": frozenset({"Security.Officer", "DR.Approver"})},
}


class RetryPolicy(BaseModel):
    """How often a step is tried before it counts as failed."""

    model_config = ConfigDict(extra="forbid")

    first_interval_s: float = Field(5.0, gt=0, le=3600)
    max_attempts: int = Field(3, ge=1, le=20)


class Compensation(BaseModel):
    """The action that undoes a completed step, run when a plan is aborted or rejected."""

    model_config = ConfigDict(extra="forbid")

    action: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class GateSpec(BaseModel):
    """Who decides a gate: every listed role must approve, from distinct people."""

    model_config = ConfigDict(extra="forbid")

    approvers: list[Role] = Field(min_length=1)
    min_approvers: int = Field(1, ge=1, le=5)
    explain: str = Field(min_length=1)

    @model_validator(mode="after")
    def _enough_people(self) -> GateSpec:
        if self.min_approvers < len(set(self.approvers)):
            self.min_approvers = len(set(self.approvers))
        return self


class Step(BaseModel):
    """One step of a runbook: an action to run or a gate to wait for."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str = Field(min_length=1)
    action: str | None = None
    gate: GateName | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    when: str | None = None
    prestage: bool = False
    destructive: bool = False
    timeout_s: float = Field(900.0, gt=0, le=MAX_TIMEOUT_S)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    compensation: Compensation | None = None
    estimate_s: float = Field(60.0, ge=0, le=MAX_TIMEOUT_S)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(f"step id {value!r} must be lower-case letters, digits and dashes")
        return value

    @model_validator(mode="after")
    def _action_or_gate(self) -> Step:
        if (self.action is None) == (self.gate is None):
            raise ValueError(f"step {self.id!r}: give exactly one of 'action' or 'gate'")
        if self.gate is not None and (self.inputs or self.compensation or self.destructive):
            raise ValueError(f"step {self.id!r}: a gate takes no inputs, compensation or flag")
        if self.gate is not None and self.prestage:
            raise ValueError(f"step {self.id!r}: a gate cannot be prestaged")
        return self

    @property
    def is_gate(self) -> bool:
        return self.gate is not None


class Runbook(BaseModel):
    """A recovery path as data, versioned; steps in the order a person reads them."""

    model_config = ConfigDict(extra="forbid")

    path: PathName
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    gates: dict[GateName, GateSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        problems = check_runbook(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def references(value: Any) -> list[str]:
    """Every ``${...}`` reference inside a value (strings, lists and mappings, nested)."""
    found: list[str] = []
    if isinstance(value, str):
        found.extend(match.strip() for match in REFERENCE.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(references(item))
    elif isinstance(value, list | tuple):
        for item in value:
            found.extend(references(item))
    return found


def condition_references(expression: str) -> list[str]:
    """The evidence and configuration names a ``when`` condition reads."""
    from shared.plans import parse_condition

    return [operand for operand in parse_condition(expression).operands() if "." in operand]


def _check_inputs(where: str, action: str, inputs: dict[str, Any]) -> list[str]:
    spec = ACTIONS.get(action)
    if spec is None:
        return [f"{where}: unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})"]
    problems = []
    for name in spec.required:
        if name not in inputs:
            problems.append(f"{where}: action {action!r} needs input {name!r}")
    allowed = set(spec.required) | set(spec.optional)
    for name in inputs:
        if name not in allowed:
            problems.append(f"{where}: action {action!r} takes no input {name!r}")
    for ref in references(inputs):
        if not REFERENCE_PATH.match(ref):
            problems.append(
                f"{where}: reference ${{{ref}}} must start with evidence., config. or steps."
            )
    return problems


def ancestors(steps: list[Step], step_id: str) -> set[str]:
    """All steps that a step waits for, directly or through others (names that exist only)."""
    by_id = {s.id: s for s in steps}
    seen: set[str] = set()
    stack = list(by_id[step_id].after) if step_id in by_id else []
    while stack:
        current = stack.pop()
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        stack.extend(by_id[current].after)
    return seen


def find_cycle(after: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a list of step ids (first repeated at the end), or None."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in after.get(node, []):
            if nxt not in after:
                continue
            if state.get(nxt) == 1:
                return trail[trail.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        trail.pop()
        state[node] = 2
        return None

    for node in after:
        if state.get(node) is None:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def check_runbook(runbook: Runbook) -> list[str]:
    """Every problem with a runbook that can be seen without evidence, one sentence each."""
    problems: list[str] = []
    ids = [s.id for s in runbook.steps]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"step ids used twice: {', '.join(duplicates)}")
    known = set(ids)
    by_id = {s.id: s for s in runbook.steps}

    for step in runbook.steps:
        where = f"step {step.id!r}"
        for dep in step.after:
            if dep not in known:
                problems.append(f"{where}: 'after' names unknown step {dep!r}")
        if step.gate is not None and step.gate not in runbook.gates:
            problems.append(f"{where}: gate {step.gate!r} is not declared under 'gates'")
        if step.action is not None:
            problems.extend(_check_inputs(where, step.action, step.inputs))
            if step.action in PATH_FORBIDDEN_ACTIONS.get(runbook.path, ()):
                problems.append(f"{where}: path {runbook.path!r} must never run {step.action!r}")
        if step.compensation is not None:
            problems.extend(
                _check_inputs(
                    f"{where} compensation", step.compensation.action, step.compensation.inputs
                )
            )
        if step.when is not None:
            try:
                reads = condition_references(step.when)
                for ref in reads:
                    if not REFERENCE_PATH.match(ref):
                        problems.append(
                            f"{where}: 'when' reads {ref!r}; a condition reads evidence., "
                            "config. or steps."
                        )
                kinds = {ref.split(".")[0] for ref in reads}
                if "steps" in kinds and len(kinds) > 1:
                    problems.append(
                        f"{where}: 'when' mixes steps. with evidence. or config.; a condition on "
                        "step results is decided later and reads step results only"
                    )
            except ValueError as exc:
                problems.append(f"{where}: 'when' {exc}")

    cycle = find_cycle({s.id: list(s.after) for s in runbook.steps})
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
        return problems

    for step in runbook.steps:
        where = f"step {step.id!r}"
        before = ancestors(runbook.steps, step.id)
        gates_before = [by_id[a] for a in before if by_id[a].is_gate]
        reads = references(step.inputs)
        if step.compensation is not None:
            reads += references(step.compensation.inputs)
        if step.when is not None:
            try:
                reads += condition_references(step.when)
            except ValueError:
                pass
        for ref in reads:
            if ref.startswith("steps."):
                target = ref.split(".")[1]
                if target not in before:
                    problems.append(
                        f"{where}: {ref!r} reads step {target!r}, "
                        "which this step does not run after"
                    )
        if step.prestage:
            if gates_before:
                problems.append(f"{where}: a prestaged step cannot wait for a gate")
            if step.destructive:
                problems.append(f"{where}: a destructive step cannot be prestaged")
            spec = ACTIONS.get(step.action or "")
            if spec is not None and not spec.read_only and step.compensation is None:
                problems.append(f"{where}: a prestaged step must be read-only or compensable")
        if step.destructive and not any(g.when is None for g in gates_before):
            problems.append(f"{where}: a destructive step must run after an unconditional gate")
        spec = ACTIONS.get(step.action or "")
        for needed in spec.must_follow if spec else ():
            if not any(by_id[a].action == needed for a in before):
                problems.append(f"{where}: {step.action!r} must run after a {needed!r} step")

    for gate, roles in PATH_REQUIRED_GATE_ROLES.get(runbook.path, {}).items():
        spec = runbook.gates.get(gate)
        if spec is None or not roles <= set(spec.approvers):
            problems.append(
                f"gate {gate!r}: path {runbook.path!r} needs approvers {', '.join(sorted(roles))}"
            )
    return problems


def parse_runbook(data: Any, *, source: str = "<runbook>") -> Runbook:
    """Validate a runbook document; RunbookError names the source and every wrong field."""
    if not isinstance(data, dict):
        raise RunbookError(f"{source}: a runbook is a mapping, not {type(data).__name__}")
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "runbook"
            lines.append(f"{loc}: {err['msg']}")
        raise RunbookError(f"{source}: " + "; ".join(lines)) from None


def runbook_file(name: str, directory: Path | None = None) -> Path:
    """The file of a runbook given its path name (``regional-outage``) or a file path."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return (directory or RUNBOOK_DIR) / f"{name}.yaml"


def load_runbook(name: str, directory: Path | None = None) -> Runbook:
    """Load and validate one runbook by path name or file; its path must match its file name."""
    path = runbook_file(name, directory)
    if not path.is_file():
        known = ", ".join(PATH_NAMES)
        raise RunbookError(f"no runbook {name!r}: {path} does not exist (paths: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RunbookError(f"{path}: not valid YAML: {exc}") from None
    runbook = parse_runbook(data, source=str(path))
    if path.stem in PATH_NAMES and runbook.path != path.stem:
        raise RunbookError(f"{path}: file is named {path.stem!r} but describes {runbook.path!r}")
    log.debug("loaded runbook %s version %s from %s", runbook.path, runbook.version, path)
    return runbook


def load_all(directory: Path | None = None) -> dict[str, Runbook]:
    """Every path's runbook, keyed by path name; a missing path is an error."""
    found = {name: load_runbook(name, directory) for name in PATH_NAMES}
    return found
