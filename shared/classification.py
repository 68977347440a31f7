"""Classification: which runbook path an incident takes, with reasons a person can check.

Pure: signals and evidence in, a ``Classification`` out. Each rule in ``RULES`` looks at the
situation and, when it applies, adds weight to one path with a sentence saying why; a veto
rules a path out with its own sentence (a replica holds the same corruption as its primary,
so corruption vetoes a failover). A path's confidence is the noisy-or of its weights. The best
path is declared a disaster only at ``DISASTER_THRESHOLD`` or above; below it the incident
stays in high-availability handling, and the reasons say what fell short.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.models import (
    Classification,
    Evidence,
    EvidenceKey,
    MonitorCondition,
    RunbookPath,
    ScenarioFamily,
    Signal,
    SignalKind,
)

DISASTER_THRESHOLD = 0.6

PATH_FAMILY = {
    RunbookPath.REGIONAL_OUTAGE: ScenarioFamily.AVAILABILITY,
    RunbookPath.HA_HANDLED: ScenarioFamily.AVAILABILITY,
    RunbookPath.DATABASE_CORRUPTION: ScenarioFamily.DATA,
    RunbookPath.FAILED_RELEASE: ScenarioFamily.DATA,
    RunbookPath.SECURITY_INCIDENT: ScenarioFamily.SECURITY,
    RunbookPath.DEPENDENCY_FAILURE: ScenarioFamily.DEPENDENCY,
}

# When two disaster paths score the same, the one that protects more wins.
_PRECEDENCE = [
    RunbookPath.SECURITY_INCIDENT,
    RunbookPath.DATABASE_CORRUPTION,
    RunbookPath.REGIONAL_OUTAGE,
    RunbookPath.FAILED_RELEASE,
    RunbookPath.DEPENDENCY_FAILURE,
]

_SECURITY_WORDS = re.compile(
    r"ransom\w*|malware|crypto ?locker|encrypted files|credential (?:leak|compromise)|"
    r"compromised|exfiltrat\w*|malicious|mass delet\w*|intrusion|breach",
    re.IGNORECASE,
)
_DAMAGE_WORDS = re.compile(
    r"corrupt\w*|unbalanced|ledger|wrong postings?|bad postings?|duplicate (?:invoice|move)s?|"
    r"sequence gaps?|accidental(?:ly)? delet\w*|data loss|truncated|integrity",
    re.IGNORECASE,
)
_RELEASE_WORDS = re.compile(
    r"deploy\w*|release|rollout|roll-out|upgrade|new version|image tag", re.IGNORECASE
)
_APP_ERROR_WORDS = re.compile(
    r"5\d\d|error rate|exceptions?|crash\w*|failed requests|http errors?", re.IGNORECASE
)
_NETWORK_WORDS = re.compile(
    r"network\w*|ingress|traefik|load balancer|latency|packet loss|dns resolution|"
    r"node (?:not ready|pressure)|pod restarts?|connection resets?",
    re.IGNORECASE,
)
_DEPENDENCY_WORDS = re.compile(
    r"\bredis\b|\bcache\b|blob storage|storage account|\bdns\b|bank (?:feed|integration|api)|"
    r"tax (?:service|integration|api)|identity provider|entra|\bsso\b",
    re.IGNORECASE,
)
_DEPENDENCY_COMPONENTS = {"redis": "Redis", "storage": "Blob storage", "key-vault": "Key Vault"}


@dataclass
class Situation:
    """What the rules look at: the active signals, the latest value of each evidence key."""

    signals: list[Signal]
    active: list[Signal]
    evidence: dict[str, Evidence]
    primary_region: str | None = None

    def value(self, key: str):
        item = self.evidence.get(key)
        return None if item is None else item.value

    def detail(self, key: str) -> str:
        item = self.evidence.get(key)
        return f" ({item.detail})" if item is not None and item.detail else ""

    def with_words(self, pattern: re.Pattern) -> list[tuple[Signal, str]]:
        hits = []
        for signal in self.active:
            match = pattern.search(signal.text())
            if match:
                hits.append((signal, match.group(0)))
        return hits

    def declared(self, path: RunbookPath) -> Signal | None:
        for signal in self.active:
            if signal.kind == SignalKind.DECLARATION and signal.facts.get("suspected_path") == path:
                return signal
        return None

    def damage_seen(self) -> bool:
        return self.value(EvidenceKey.DATA_DAMAGE) is True or bool(self.with_words(_DAMAGE_WORDS))

    def database_healthy(self) -> bool:
        return (
            self.value(EvidenceKey.PRIMARY_REACHABLE) is True
            and self.value(EvidenceKey.PRIMARY_REGION_AVAILABLE) is not False
        )


@dataclass(frozen=True)
class Finding:
    path: RunbookPath
    weight: float
    reason: str
    veto: bool = False


Rule = Callable[[Situation], Iterable[Finding]]


def _name(signal: Signal) -> str:
    return f"'{signal.rule_name or signal.event_type or signal.kind.value}'"


# ---------------------------------------------------------------------------------------
# Rules, grouped by the path they speak for.


def _declarations(s: Situation) -> Iterable[Finding]:
    for path in RunbookPath:
        signal = s.declared(path)
        if signal is not None:
            who = signal.facts.get("declared_by") or "an operator"
            yield Finding(path, 0.9, f"{who} declared a suspected {path.value}.")


def _security(s: Situation) -> Iterable[Finding]:
    path = RunbookPath.SECURITY_INCIDENT
    for signal in s.active:
        if signal.kind == SignalKind.ACTIVITY_SECURITY:
            yield Finding(path, 0.7, f"Azure Monitor raised the security alert {_name(signal)}.")
    for signal, word in s.with_words(_SECURITY_WORDS):
        yield Finding(path, 0.8, f"The signal {_name(signal)} reports '{word}'.")
    if s.value(EvidenceKey.SECURITY_COMPROMISE) is True:
        detail = s.detail(EvidenceKey.SECURITY_COMPROMISE)
        yield Finding(path, 0.9, f"Evidence points to a compromise{detail}.")


def _corruption(s: Situation) -> Iterable[Finding]:
    path = RunbookPath.DATABASE_CORRUPTION
    if s.value(EvidenceKey.DATA_DAMAGE) is True:
        detail = s.detail(EvidenceKey.DATA_DAMAGE)
        yield Finding(path, 0.9, f"Finance checks found damaged data{detail}.")
    for signal, word in s.with_words(_DAMAGE_WORDS):
        yield Finding(path, 0.6, f"The signal {_name(signal)} reports '{word}'.")
    if s.damage_seen() and (s.value(EvidenceKey.RECENT_RELEASE) or s.with_words(_RELEASE_WORDS)):
        yield Finding(
            path, 0.4, "A release went out before the damage: its posting logic is the suspect."
        )
    if s.damage_seen():
        for other in (RunbookPath.REGIONAL_OUTAGE, RunbookPath.FAILED_RELEASE):
            reason = (
                "the replica holds the same damage as the primary, so failing over recovers nothing"
                if other == RunbookPath.REGIONAL_OUTAGE
                else "the data is damaged, so rolling back the release alone does not repair it"
            )
            yield Finding(other, 0.0, f"Ruled out {other.value}: {reason}.", veto=True)


def _release(s: Situation) -> Iterable[Finding]:
    path = RunbookPath.FAILED_RELEASE
    released = s.value(EvidenceKey.RECENT_RELEASE)
    release_words = s.with_words(_RELEASE_WORDS)
    app_down = s.value(EvidenceKey.APP_HEALTHY) is False or bool(s.with_words(_APP_ERROR_WORDS))
    if (released or release_words) and app_down:
        what = f"release {released}" if isinstance(released, str) else "a recent release"
        yield Finding(path, 0.7, f"The application fails after {what}.")
    elif release_words:
        signal, word = release_words[0]
        yield Finding(path, 0.3, f"The signal {_name(signal)} mentions a '{word}'.")
    for signal in s.active:
        if signal.kind == SignalKind.RESOURCE_WRITE and (signal.component or "").startswith("aks"):
            yield Finding(path, 0.2, f"The AKS cluster {signal.component} was just changed.")


def _outage(s: Situation) -> Iterable[Finding]:
    path = RunbookPath.REGIONAL_OUTAGE
    for signal in s.active:
        if signal.kind == SignalKind.SERVICE_HEALTH and _is_outage_notice(signal, s):
            yield Finding(
                path,
                0.7,
                f"Azure service health reports an incident in {signal.region}, the primary region.",
            )
        if signal.component == "postgres-primary" and _unavailable(signal):
            yield Finding(path, 0.5, "Azure reports the primary PostgreSQL server unavailable.")
    if s.value(EvidenceKey.PRIMARY_REACHABLE) is False:
        detail = s.detail(EvidenceKey.PRIMARY_REACHABLE)
        yield Finding(path, 0.5, f"The primary PostgreSQL server does not answer{detail}.")
    if s.value(EvidenceKey.PRIMARY_REGION_AVAILABLE) is False:
        detail = s.detail(EvidenceKey.PRIMARY_REGION_AVAILABLE)
        yield Finding(path, 0.8, f"The primary region is unavailable{detail}.")
    down = {x.component for x in s.active if x.component and _unavailable(x)}
    if len(down) >= 2 and s.primary_region:
        yield Finding(
            path,
            0.4,
            f"{len(down)} components report unavailable at once: {', '.join(sorted(down))}.",
        )
    if s.database_healthy():
        yield Finding(
            path,
            0.0,
            "Ruled out regional-outage: the primary PostgreSQL server answers, so the database "
            "is not lost.",
            veto=True,
        )
    if s.value(EvidenceKey.REPLICA_HEALTHY) is False:
        yield Finding(
            path,
            0.0,
            "Ruled out regional-outage: the replica is not healthy enough to promote.",
            veto=True,
        )


def _is_outage_notice(signal: Signal, s: Situation) -> bool:
    kind = (signal.facts.get("incident_type") or "incident").lower()
    regions = (signal.facts.get("impacted_regions") or signal.region or "").split(", ")
    return kind == "incident" and s.primary_region is not None and s.primary_region in regions


def _unavailable(signal: Signal) -> bool:
    state = signal.facts.get("current_health_status") or signal.facts.get("availability_state")
    return isinstance(state, str) and state.lower() == "unavailable"


def _dependency(s: Situation) -> Iterable[Finding]:
    path = RunbookPath.DEPENDENCY_FAILURE
    for signal in s.active:
        label = _DEPENDENCY_COMPONENTS.get(signal.component or "")
        if signal.kind == SignalKind.KEYVAULT_EXPIRED:
            what = signal.facts.get("object_name") or "an object"
            yield Finding(
                path,
                0.7,
                f"The Key Vault {signal.facts.get('object_type') or 'object'} "
                f"'{what}' has expired.",
            )
        elif signal.kind == SignalKind.KEYVAULT_NEAR_EXPIRY:
            what = signal.facts.get("object_name") or "an object"
            yield Finding(path, 0.3, f"The Key Vault object '{what}' expires soon.")
        elif label is not None and (signal.severity is None or signal.severity <= 2):
            yield Finding(path, 0.6, f"{label} alerts: {_name(signal)}.")
    for signal, word in s.with_words(_DEPENDENCY_WORDS):
        yield Finding(path, 0.4, f"The signal {_name(signal)} is about '{word}'.")
    down = s.value(EvidenceKey.DEPENDENCY_DOWN)
    if isinstance(down, str) and down:
        yield Finding(
            path, 0.8, f"A dependency is down: {down}{s.detail(EvidenceKey.DEPENDENCY_DOWN)}."
        )


RULES: list[Rule] = [_declarations, _security, _corruption, _release, _outage, _dependency]


# ---------------------------------------------------------------------------------------


def active_signals(signals: Iterable[Signal]) -> list[Signal]:
    """Fired signals not cleared by a later Resolved of the same rule on the same resource."""
    ordered = list(signals)
    cleared: set[tuple] = set()
    active: list[Signal] = []
    for signal in reversed(ordered):
        key = (signal.rule_name, (signal.resource_id or "").lower())
        if signal.condition == MonitorCondition.RESOLVED:
            cleared.add(key)
        elif key not in cleared:
            active.append(signal)
    active.reverse()
    return active


def latest_evidence(evidence: Iterable[Evidence]) -> dict[str, Evidence]:
    latest: dict[str, Evidence] = {}
    for item in evidence:
        seen = latest.get(item.key)
        if seen is None or item.observed_at >= seen.observed_at:
            latest[item.key] = item
    return latest


@dataclass
class _Tally:
    weights: dict[RunbookPath, list[float]] = field(default_factory=dict)
    reasons: dict[RunbookPath, list[str]] = field(default_factory=dict)
    vetoes: dict[RunbookPath, list[str]] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        target = self.vetoes if finding.veto else self.reasons
        if finding.reason not in target.get(finding.path, []):
            target.setdefault(finding.path, []).append(finding.reason)
            if not finding.veto:
                self.weights.setdefault(finding.path, []).append(finding.weight)

    def score(self, path: RunbookPath) -> float:
        if path in self.vetoes:
            return 0.0
        miss = 1.0
        for weight in self.weights.get(path, []):
            miss *= 1.0 - weight
        return round(1.0 - miss, 3)


def classify(
    signals: Iterable[Signal],
    evidence: Iterable[Evidence] = (),
    *,
    primary_region: str | None = None,
) -> Classification:
    """Choose the runbook path for the incident these signals and evidence describe.

    ``primary_region`` is the environment's primary region (service health notices elsewhere
    do not make a regional outage).
    """
    signals = list(signals)
    situation = Situation(
        signals=signals,
        active=active_signals(signals),
        evidence=latest_evidence(evidence),
        primary_region=primary_region,
    )
    tally = _Tally()
    for rule in RULES:
        for finding in rule(situation):
            tally.add(finding)

    candidates = {p: tally.score(p) for p in _PRECEDENCE}
    best = max(_PRECEDENCE, key=lambda p: (candidates[p], -_PRECEDENCE.index(p)))
    confidence = candidates[best]
    vetoed = [r for p in _PRECEDENCE for r in tally.vetoes.get(p, [])]
    if confidence >= DISASTER_THRESHOLD:
        reasons = tally.reasons[best] + vetoed
        reasons.append(
            f"{best.value} scores {confidence:.2f}, at or above the disaster threshold "
            f"{DISASTER_THRESHOLD:.2f}."
        )
        return Classification(
            path=best,
            family=PATH_FAMILY[best],
            confidence=confidence,
            disaster=True,
            reasons=reasons,
            candidates={p.value: v for p, v in candidates.items()},
        )
    return _ha_handled(situation, tally, best, confidence, candidates, vetoed)


def _ha_handled(
    s: Situation,
    tally: _Tally,
    best: RunbookPath,
    confidence: float,
    candidates: dict[RunbookPath, float],
    vetoed: list[str],
) -> Classification:
    reasons: list[str] = []
    for signal, word in s.with_words(_NETWORK_WORDS):
        reasons.append(
            f"The signal {_name(signal)} is about '{word}', which rerouting or a restart handles."
        )
    if s.database_healthy():
        reasons.append("The primary PostgreSQL server answers, so no data is at risk.")
    if s.value(EvidenceKey.PERIOD_CLOSE) is True:
        reasons.append(
            "Month-end close is in progress: a failover would interrupt it, and nothing here "
            "calls for one."
        )
    reasons += vetoed
    if confidence > 0:
        reasons += tally.reasons.get(best, [])
        reasons.append(
            f"The strongest disaster path, {best.value}, scores {confidence:.2f}, below the "
            f"disaster threshold {DISASTER_THRESHOLD:.2f}: no disaster is declared."
        )
    else:
        reasons.append("No rule points to a disaster: the incident stays in HA handling.")
    if not s.active and s.signals:
        reasons.append("Every signal has resolved.")
    family = PATH_FAMILY[best] if confidence > 0 else ScenarioFamily.AVAILABILITY
    return Classification(
        path=RunbookPath.HA_HANDLED,
        family=family,
        confidence=round(1.0 - confidence, 3),
        disaster=False,
        reasons=reasons,
        candidates={p.value: v for p, v in candidates.items()},
    )


def scenario_family(signal: Signal) -> ScenarioFamily:
    """The family one signal folds into, judged from the signal alone (intake has no evidence).

    A Resolved signal is judged as if it fired, so it folds into the incident it clears.
    """
    probe = signal.model_copy(update={"condition": MonitorCondition.FIRED})
    situation = Situation(signals=[probe], active=[probe], evidence={})
    tally = _Tally()
    for rule in RULES:
        for finding in rule(situation):
            tally.add(finding)
    scores = {p: tally.score(p) for p in _PRECEDENCE}
    best = max(_PRECEDENCE, key=lambda p: (scores[p], -_PRECEDENCE.index(p)))
    return PATH_FAMILY[best] if scores[best] > 0 else ScenarioFamily.AVAILABILITY


def correlation_key(environment: str, family: ScenarioFamily | str) -> str:
    """Signals with one correlation key fold into one incident: ``prod-eu.availability``."""
    return f"{environment}.{ScenarioFamily(family).value}"


def incident_id(key: str, generation: int) -> str:
    """The incident id: correlation key plus generation, ``prod-eu.availability.3``."""
    if generation < 1:
        raise ValueError(f"generation must be 1 or more, not {generation}")
    return f"{key}.{generation}"


def split_incident_id(value: str) -> tuple[str, int]:
    """``prod-eu.availability.3`` -> (``prod-eu.availability``, 3).

    :raises ValueError: not an incident id.
    """
    key, _, generation = value.rpartition(".")
    environment, _, family = key.rpartition(".")
    if (
        not environment
        or family not in {f.value for f in ScenarioFamily}
        # The generation as incident_id() writes it: ASCII digits, no leading zero (so
        # "….01" or a full-width "１" is not another name of incident 1).
        or not re.fullmatch(r"[1-9][0-9]*", generation)
    ):
        raise ValueError(f"{value!r} is not an incident id (environment.family.generation)")
    return key, int(generation)
