"""The plan builder and the plan graph: runbook + evidence + configuration -> this incident's steps.

Everything here is pure: no I/O, no clock. The executor (``orchestrators/plan.py``) uses the
scheduler and the reference resolver below during replay, so they must stay deterministic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from shared.runbooks import (
    ACTIONS,
    REFERENCE,
    GateName,
    RetryPolicy,
    Role,
    Runbook,
    RunbookError,
    check_runbook,
    find_cycle,
    parse_runbook,
    references,
)

log = logging.getLogger(__name__)

PLAN_SCHEMA = 1

_CONDITION = re.compile(r"^\s*(?:(not)\s+(\S+)|(\S+)\s*(==|!=|>=|<=|>|<)\s*(\S+)|(\S+))\s*$")
_DOTTED = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)+$")
_WHOLE_REFERENCE = re.compile(r"^\$\{([^}]*)\}$")


class PlanError(RunbookError):
    """A plan cannot be built; ``problems`` holds one sentence per problem (step and field)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class Condition(BaseModel):
    """A parsed ``when``: ``[not] operand`` or ``operand op operand``."""

    model_config = ConfigDict(frozen=True)

    text: str
    negate: bool = False
    left: str
    op: str | None = None
    right: str | None = None

    def operands(self) -> list[str]:
        return [o for o in (self.left, self.right) if o is not None and _DOTTED.match(o)]


def parse_condition(expression: str) -> Condition:
    """Parse a ``when`` expression; ValueError says what is wrong with it."""
    # Limitation: one comparison per condition, no and/or; a runbook writes two steps instead.
    match = _CONDITION.match(expression or "")
    if not match:
        raise ValueError(
            f"cannot read condition {expression!r}: write 'name', 'not name' or 'name OP value' "
            "with OP one of == != > >= < <="
        )
    negate, neg_operand, left, op, right, single = match.groups()
    if neg_operand is not None:
        return Condition(text=expression, negate=True, left=neg_operand)
    if single is not None:
        return Condition(text=expression, left=single)
    return Condition(text=expression, left=left, op=op, right=right)


def _lookup(path: str, context: Mapping[str, Any]) -> Any:
    """The value at a dotted path, or KeyError naming the whole path.

    Keys may themselves hold dots (evidence keys such as ``postgres.primary.reachable``): at each
    level the longest key that matches wins, so flat and nested mappings both work.
    """
    parts = path.split(".")
    current: Any = context
    i = 0
    while i < len(parts):
        if not isinstance(current, Mapping):
            raise KeyError(path)
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in current:
                current, i = current[key], j
                break
        else:
            raise KeyError(path)
    return current


def _operand(token: str, context: Mapping[str, Any]) -> Any:
    if _DOTTED.match(token):
        return _lookup(token, context)
    return yaml.safe_load(token)


def evaluate_condition(condition: Condition, context: Mapping[str, Any]) -> tuple[bool, str]:
    """Evaluate a condition; returns the outcome and a sentence showing the values it read."""
    left = _operand(condition.left, context)
    shown = [f"{condition.left} = {left!r}"] if _DOTTED.match(condition.left) else []
    if condition.op is None:
        outcome = bool(left) != condition.negate
    else:
        right = _operand(condition.right, context)
        if _DOTTED.match(condition.right):
            shown.append(f"{condition.right} = {right!r}")
        try:
            outcome = {
                "==": lambda a, b: a == b,
                "!=": lambda a, b: a != b,
                ">": lambda a, b: a > b,
                ">=": lambda a, b: a >= b,
                "<": lambda a, b: a < b,
                "<=": lambda a, b: a <= b,
            }[condition.op](left, right)
        except TypeError:
            raise ValueError(
                f"cannot compare {left!r} {condition.op} {right!r} in {condition.text!r}"
            ) from None
    verdict = "true" if outcome else "false"
    values = f" ({', '.join(shown)})" if shown else ""
    return outcome, f"condition '{condition.text}' is {verdict}{values}"


def resolve(value: Any, context: Mapping[str, Any], *, keep: tuple[str, ...] = ()) -> Any:
    """Replace ``${...}`` references in a value from ``context``.

    A string that is one whole reference becomes the referenced value with its type; references
    inside a longer string are formatted in. References whose first part is in ``keep`` stay as
    they are (the plan keeps ``steps.*`` for the executor). KeyError names a missing reference.
    """
    if isinstance(value, str):
        whole = _WHOLE_REFERENCE.match(value)
        if whole:
            ref = whole.group(1).strip()
            if ref.split(".")[0] in keep:
                return value
            return _lookup(ref, context)

        def one(match: re.Match) -> str:
            ref = match.group(1).strip()
            if ref.split(".")[0] in keep:
                return match.group(0)
            return str(_lookup(ref, context))

        return REFERENCE.sub(one, value)
    if isinstance(value, dict):
        return {k: resolve(v, context, keep=keep) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, context, keep=keep) for v in value]
    return value


class PlanCompensation(BaseModel):
    """The undo of a step, with its inputs resolved and its activity named."""

    model_config = ConfigDict(extra="forbid")

    action: str
    activity: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class PlanStep(BaseModel):
    """One step of a plan: resolved inputs, dependencies, and how it is run and undone."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    kind: Literal["action", "gate"]
    action: str | None = None
    activity: str | None = None
    gate: GateName | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    prestage: bool = False
    destructive: bool = False
    timeout_s: float = Field(gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    compensation: PlanCompensation | None = None
    estimate_s: float = Field(0.0, ge=0)
    condition: str | None = None
    runtime_condition: bool = False
    condition_reason: str | None = None
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


class PlanGate(BaseModel):
    """A gate this plan waits for: who approves it and why it is in this plan."""

    model_config = ConfigDict(extra="forbid")

    name: GateName
    approvers: list[Role]
    min_approvers: int = Field(ge=1)
    explain: str
    reason: str


class Plan(BaseModel):
    """The runbook's steps for one incident, ready for the executor (plain JSON when dumped)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = PLAN_SCHEMA
    incident_id: str | None = None
    path: str
    runbook_version: int
    title: str
    steps: list[PlanStep]
    gates: dict[str, PlanGate] = Field(default_factory=dict)
    critical_path: list[str] = Field(default_factory=list)
    estimated_rto_s: float = 0.0
    decisions: list[str] = Field(default_factory=list)

    def step(self, step_id: str) -> PlanStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def prestaged(self) -> list[str]:
        return [s.id for s in self.steps if s.prestage and not s.skipped]


def _as_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return value
    raise PlanError([f"{name} must be a mapping, not {type(value).__name__}"])


def build_plan(
    runbook: Runbook | Mapping[str, Any],
    evidence: Mapping[str, Any] | BaseModel | None,
    config: Mapping[str, Any] | BaseModel | None,
    *,
    incident_id: str | None = None,
) -> Plan:
    """Turn a runbook into the plan for one incident.

    Conditions are decided from evidence and configuration now; a step whose condition is false
    stays in the plan as skipped, with the sentence that says why. References to evidence and
    configuration are resolved; references to other steps' results (``${steps.ID.field}``) are
    kept for the executor. Raises PlanError naming every step and field that is wrong.
    """
    if not isinstance(runbook, Runbook):
        try:
            runbook = parse_runbook(runbook)
        except RunbookError as exc:
            raise PlanError([str(exc)]) from None
    problems = check_runbook(runbook)
    if problems:
        raise PlanError(problems)

    context = {
        "evidence": _as_mapping(evidence, "evidence"),
        "config": _as_mapping(config, "config"),
    }
    steps: list[PlanStep] = []
    decisions: list[str] = []
    for step in runbook.steps:
        built = _build_step(step, context, problems)
        if built is None:
            continue
        if built.condition is not None and not built.runtime_condition:
            verdict = "skipped" if built.skipped else "kept"
            decisions.append(f"step '{step.id}' {verdict}: {built.condition_reason}")
        steps.append(built)
    problems.extend(_check_step_references(steps))
    if problems:
        raise PlanError(problems)

    gates = {}
    for step in steps:
        if step.gate is not None and not step.skipped:
            spec = runbook.gates[step.gate]
            gates[step.gate] = PlanGate(
                name=step.gate,
                approvers=list(spec.approvers),
                min_approvers=spec.min_approvers,
                explain=spec.explain,
                reason=_why(step) if step.condition_reason else spec.explain,
            )

    plan = Plan(
        incident_id=incident_id,
        path=runbook.path,
        runbook_version=runbook.version,
        title=runbook.title,
        steps=steps,
        gates=gates,
        decisions=decisions,
    )
    path, length = critical_path(plan)
    plan.critical_path, plan.estimated_rto_s = path, length
    log.info(
        "plan for incident %s from runbook %s v%s: %s steps, %s skipped, estimated RTO %.0f s",
        incident_id,
        runbook.path,
        runbook.version,
        len(steps),
        sum(1 for s in steps if s.skipped),
        length,
    )
    return plan


def _why(step: PlanStep) -> str:
    return step.condition_reason or f"condition '{step.condition}' holds"


def _build_step(step, context, problems: list[str]) -> PlanStep | None:
    where = f"step '{step.id}'"
    skip_reason = None
    reason = None
    runtime = step.when is not None and any(
        r.startswith("steps.") for r in parse_condition(step.when).operands()
    )
    if step.when is not None and not runtime:
        try:
            outcome, reason = evaluate_condition(parse_condition(step.when), context)
        except (KeyError, ValueError) as exc:
            missing = isinstance(exc, KeyError)
            why = f"{exc.args[0]} is not in the plan's context" if missing else str(exc)
            if not step.is_gate:
                problems.append(f"{where} field 'when': {why}")
                return None
            # When the evidence cannot decide whether a gate is needed, people decide.
            outcome, reason = (
                True,
                f"condition '{step.when}' cannot be decided ({why}): the gate stays",
            )
        if not outcome:
            skip_reason = f"skipped because {reason}"

    inputs = _resolve_inputs(
        where, "inputs", step.action, step.inputs, context, problems, skip_reason
    )
    compensation = None
    if step.compensation is not None:
        comp_inputs = _resolve_inputs(
            where,
            "compensation.inputs",
            step.compensation.action,
            step.compensation.inputs,
            context,
            problems,
            skip_reason,
        )
        compensation = PlanCompensation(
            action=step.compensation.action,
            activity=ACTIONS[step.compensation.action].activity,
            inputs=comp_inputs,
        )

    built = PlanStep(
        id=step.id,
        title=step.title,
        kind="gate" if step.is_gate else "action",
        action=step.action,
        activity=ACTIONS[step.action].activity if step.action else None,
        gate=step.gate,
        inputs=inputs,
        after=list(step.after),
        prestage=step.prestage,
        destructive=step.destructive,
        timeout_s=step.timeout_s,
        retry=step.retry,
        compensation=compensation,
        estimate_s=step.estimate_s,
        condition=step.when,
        runtime_condition=runtime,
        condition_reason=reason,
        skip_reason=skip_reason,
    )
    return built


def _resolve_inputs(where, field, action, inputs, context, problems, skip_reason) -> dict:
    """Resolve one mapping of inputs; a skipped step keeps what it cannot resolve, unresolved.

    A required input that resolves to null is an error; an optional one is left out, so the
    activity uses its own default.
    """
    required = set(ACTIONS[action].required) if action in ACTIONS else set()
    resolved: dict[str, Any] = {}
    for name, value in inputs.items():
        try:
            resolved[name] = resolve(value, context, keep=("steps",))
        except KeyError as exc:
            if skip_reason is not None:
                resolved[name] = value
                continue
            problems.append(f"{where} {field} '{name}': {exc.args[0]} is not in the plan's context")
            continue
        if resolved[name] is None and skip_reason is None:
            if name in required:
                problems.append(f"{where} {field} '{name}': resolved to nothing (null)")
            else:
                del resolved[name]
    return resolved


def _check_step_references(steps: list[PlanStep]) -> list[str]:
    by_id = {s.id: s for s in steps}
    problems = []
    for step in steps:
        if step.skipped:
            continue
        for field, value in (("inputs", step.inputs),) + (
            (("compensation.inputs", step.compensation.inputs),) if step.compensation else ()
        ):
            for name, item in value.items():
                for ref in references(item):
                    target = ref.split(".")[1] if ref.startswith("steps.") else None
                    if target and target in by_id and by_id[target].skipped:
                        problems.append(
                            f"step '{step.id}' {field} '{name}': reads step '{target}', "
                            "which this plan skips"
                        )
    return problems


def step_references_resolved(inputs: dict[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve ``${steps.ID.field}`` references from the results of finished steps (executor).

    KeyError names the reference that a finished step's result does not hold.
    """
    return resolve(inputs, {"steps": results})


def decide_runtime_condition(step: PlanStep, results: Mapping[str, Any]) -> tuple[bool | None, str]:
    """Decide a condition that reads earlier steps' results, when the step becomes ready.

    Returns None for the outcome when the results cannot decide it (a missing field, values that
    do not compare), with a sentence saying why; the executor then keeps a gate (people decide)
    and fails an action step (an operator decides), never running or skipping on a guess.
    """
    try:
        return evaluate_condition(parse_condition(step.condition or ""), {"steps": results})
    except KeyError as exc:
        return None, f"condition '{step.condition}' cannot be decided: {exc.args[0]} is missing"
    except ValueError as exc:
        return None, f"condition '{step.condition}' cannot be decided: {exc}"


# --- the graph ---------------------------------------------------------------------------------


def topological_order(plan: Plan, extra_after: Mapping[str, list[str]] | None = None) -> list[str]:
    """Step ids in an order where each comes after its dependencies; ties keep plan order."""
    extra = extra_after or {}
    after = {s.id: list(s.after) + list(extra.get(s.id, [])) for s in plan.steps}
    cycle = find_cycle(after)
    if cycle:
        raise PlanError(["dependency cycle: " + " -> ".join(cycle)])
    done: list[str] = []
    placed: set[str] = set()
    while len(done) < len(after):
        for step in plan.steps:
            if step.id not in placed and all(d in placed for d in after[step.id]):
                done.append(step.id)
                placed.add(step.id)
                break
    return done


def _duration(step: PlanStep) -> float:
    return 0.0 if step.skipped else step.estimate_s


def critical_path(
    plan: Plan, *, durations: Mapping[str, float] | None = None, extra_after=None
) -> tuple[list[str], float]:
    """The longest chain of steps by duration, and its length in seconds (the estimated RTO).

    ``durations`` overrides the plan's estimates (the benchmark passes measured ones);
    ``extra_after`` adds dependencies, to ask "what if" questions of the same graph.
    """
    by_id = {s.id: s for s in plan.steps}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for step_id in topological_order(plan, extra_after):
        step = by_id[step_id]
        deps = list(step.after) + list((extra_after or {}).get(step_id, []))
        start, prev = 0.0, None
        for dep in deps:
            if finish[dep] > start:
                start, prev = finish[dep], dep
        own = durations.get(step_id, _duration(step)) if durations else _duration(step)
        if step.skipped:
            own = 0.0
        finish[step_id] = start + own
        via[step_id] = prev
    if not finish:
        return [], 0.0
    last = max(finish, key=lambda k: (finish[k], -list(by_id).index(k)))
    chain = []
    node: str | None = last
    while node is not None:
        chain.append(node)
        node = via[node]
    return list(reversed(chain)), finish[last]


def root_gates(plan: Plan) -> list[str]:
    """Gate steps that wait for no other gate: the first decisions people make."""
    by_id = {s.id: s for s in plan.steps}
    roots = []
    for step in plan.steps:
        if step.kind != "gate" or step.skipped:
            continue
        if not any(
            by_id[a].kind == "gate" and not by_id[a].skipped for a in _ancestors(plan, step.id)
        ):
            roots.append(step.id)
    return roots


def _ancestors(plan: Plan, step_id: str) -> set[str]:
    by_id = {s.id: s for s in plan.steps}
    seen: set[str] = set()
    stack = list(by_id[step_id].after)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(by_id[current].after)
    return seen


def prestage_saved_s(plan: Plan, durations: Mapping[str, float] | None = None) -> float:
    """How much sooner the plan ends because prestaged steps do not wait for the first gates."""
    gates = root_gates(plan)
    # A prestaged step that a gate itself waits for runs before the decision either way.
    before_gates = set().union(*(_ancestors(plan, g) for g in gates)) if gates else set()
    extra = {sid: gates for sid in plan.prestaged if sid not in before_gates}
    _, with_prestage = critical_path(plan, durations=durations)
    _, without = critical_path(plan, durations=durations, extra_after=extra)
    return max(0.0, without - with_prestage)


def sequential_s(plan: Plan, durations: Mapping[str, float] | None = None) -> float:
    """Every step one after the other, gates (the approval waits) included."""
    total = 0.0
    for step in plan.steps:
        if not step.skipped:
            total += durations.get(step.id, step.estimate_s) if durations else step.estimate_s
    return total


def ready_steps(plan: Plan, finished: Iterable[str], started: Iterable[str]) -> list[str]:
    """Steps that may start now: all dependencies finished, not yet started.

    The executor calls this after every completion, so a step starts as soon as its own
    dependencies end rather than when a wave of steps ends. Prestaged steps come first, then
    plan order, so that the work that can go ahead before approval is scheduled first.
    """
    finished = set(finished)
    started = set(started) | finished
    ready = [
        s for s in plan.steps if s.id not in started and all(dep in finished for dep in s.after)
    ]
    ready.sort(key=lambda s: (not s.prestage, plan.steps.index(s)))
    return [s.id for s in ready]


def blocked_by(plan: Plan, failed: Iterable[str]) -> set[str]:
    """Steps that can never start while the given steps have not finished (their descendants)."""
    failed = set(failed)
    blocked: set[str] = set()
    changed = True
    while changed:
        changed = False
        for step in plan.steps:
            if step.id not in blocked and any(d in failed or d in blocked for d in step.after):
                blocked.add(step.id)
                changed = True
    return blocked


# --- running a plan: the executor's input, the messages it takes, and its result ---------------

GateDecision = Literal["approved", "rejected", "expired"]
OperatorVerb = Literal["retry", "skip", "abort"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped"]
PlanOutcome = Literal["completed", "needs-operator", "aborted", "rejected", "expired"]

GATE_EVENT_PREFIX = "gate:"
OPERATOR_EVENT = "operator-action"


def gate_event_name(gate: str) -> str:
    """The external event that decides a gate when the executor waits for events."""
    return f"{GATE_EVENT_PREFIX}{gate}"


class PlanRunRequest(BaseModel):
    """The executor's input: the plan, and how gates are decided and operators waited for."""

    model_config = ConfigDict(extra="forbid")

    plan: Plan
    gate_orchestrator: str | None = Field(
        None,
        description="sub-orchestrator that decides each gate; None: wait for 'gate:<name>' events",
    )
    operator_timeout_s: float = Field(
        4 * 3600,
        ge=0,
        le=5 * 24 * 3600,
        description="how long a failed step waits for an operator; 0 ends at once",
    )


class GateRequest(BaseModel):
    """The input of the gate sub-orchestrator: which gate, who approves, and what is at stake."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str | None
    plan_instance_id: str
    gate: GateName
    step_id: str
    approvers: list[Role]
    min_approvers: int
    explain: str
    reason: str
    path: str
    estimated_rto_s: float
    prestaged: list[str]


class GateOutcome(BaseModel):
    """How a gate ended; the payload of a ``gate:<name>`` event or the gate sub-orchestrator."""

    model_config = ConfigDict(extra="ignore")

    decision: GateDecision
    reason: str = ""
    approvers: list[str] = Field(default_factory=list)


class OperatorAction(BaseModel):
    """An operator's decision about a parked step; the payload of the ``operator-action`` event."""

    model_config = ConfigDict(extra="ignore")

    action: OperatorVerb
    step: str | None = None
    reason: str = Field(min_length=1)
    actor: str = Field(min_length=1)


class StepRecord(BaseModel):
    """What happened to one step in a run."""

    model_config = ConfigDict(extra="forbid")

    status: StepStatus = "pending"
    started_at: str | None = None
    ended_at: str | None = None
    runs: int = 0
    result: Any = None
    error: str | None = None
    reason: str | None = None


class CompensationRecord(BaseModel):
    """One compensation the executor ran, in the order it ran them."""

    model_config = ConfigDict(extra="forbid")

    step: str
    action: str
    ok: bool
    started_at: str
    ended_at: str
    result: Any = None
    error: str | None = None


class PlanResult(BaseModel):
    """The executor's output."""

    model_config = ConfigDict(extra="forbid")

    outcome: PlanOutcome
    reason: str
    path: str
    incident_id: str | None
    steps: dict[str, StepRecord]
    gates: dict[str, GateOutcome] = Field(default_factory=dict)
    compensations: list[CompensationRecord] = Field(default_factory=list)
    operator_actions: list[dict[str, Any]] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    started_at: str
    ended_at: str


def outline_plan(runbook: Runbook) -> Plan:
    """The runbook as a plan with every step kept and nothing resolved (for rendering).

    Conditions are left undecided, so the critical path and the estimate assume every
    conditional step runs: the longest the path can take.
    """
    steps = [
        PlanStep(
            id=s.id,
            title=s.title,
            kind="gate" if s.is_gate else "action",
            action=s.action,
            activity=ACTIONS[s.action].activity if s.action else None,
            gate=s.gate,
            inputs=s.inputs,
            after=list(s.after),
            prestage=s.prestage,
            destructive=s.destructive,
            timeout_s=s.timeout_s,
            retry=s.retry,
            compensation=PlanCompensation(
                action=s.compensation.action,
                activity=ACTIONS[s.compensation.action].activity,
                inputs=s.compensation.inputs,
            )
            if s.compensation
            else None,
            estimate_s=s.estimate_s,
            condition=s.when,
        )
        for s in runbook.steps
    ]
    plan = Plan(
        path=runbook.path, runbook_version=runbook.version, title=runbook.title, steps=steps
    )
    plan.critical_path, plan.estimated_rto_s = critical_path(plan)
    return plan
