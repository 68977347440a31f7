"""Authorization: Entra ID bearer tokens, roles, four-eyes rules, and card action tokens.

``TokenValidator.authenticate`` turns an ``Authorization`` header into a ``Principal`` or
raises ``Unauthenticated`` (HTTP 401); role and four-eyes checks raise ``Forbidden`` (403).
Card action tokens are HMAC-signed, bound to one incident, gate and decision, expire, and are
spent once through the store. The decision functions here are pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
import requests
from jwt.algorithms import RSAAlgorithm
from pydantic import BaseModel, Field

from shared.config import GatePolicy, GateRequirement
from shared.models import ApprovalDecision, Decision, Gate, Principal

log = logging.getLogger(__name__)

JWKS_TIMEOUT_S = 5.0
JWKS_TTL_S = 600.0
# An unknown key id triggers a refetch (keys rotate), but not more often than this.
JWKS_MIN_REFRESH_S = 30.0
CLOCK_SKEW_S = 60
ACTION_TOKEN_PREFIX = "v1"
# Tokens this app issues are a few hundred ASCII characters; anything longer is not one of them.
MAX_ACTION_TOKEN_CHARS = 4000
MIN_ACTION_KEY_BYTES = 32


class AuthError(Exception):
    """Base of the errors here; ``status`` is the HTTP status the trigger answers."""

    status = 401


class Unauthenticated(AuthError):
    """No token, or one that is not valid: answer 401."""

    status = 401


class Forbidden(AuthError):
    """A valid identity that may not do this: answer 403."""

    status = 403


class AuthConfigError(RuntimeError):
    """The app settings needed to check tokens are missing."""


# ---------------------------------------------------------------------------------------
# Bearer tokens.


class JwksCache:
    """The issuer's signing keys, fetched with a timeout and kept for ``ttl`` seconds."""

    def __init__(
        self,
        uri: str,
        *,
        timeout: float = JWKS_TIMEOUT_S,
        ttl: float = JWKS_TTL_S,
        session: requests.Session | None = None,
    ):
        self.uri = uri
        self.timeout = timeout
        self.ttl = ttl
        self._session = session or requests.Session()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            response = self._session.get(self.uri, timeout=self.timeout)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            self._failed_at = time.monotonic()
            self._failure = f"cannot fetch the signing keys from {self.uri}: {exc}"
            raise Unauthenticated(self._failure) from exc
        keys = {}
        listed = document.get("keys") if isinstance(document, dict) else None
        for jwk in listed if isinstance(listed, list) else []:
            if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and jwk.get("kid"):
                try:
                    keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
                except (ValueError, KeyError, jwt.InvalidKeyError):
                    log.warning("skipping an unusable key %s in %s", jwk.get("kid"), self.uri)
        self._keys, self._fetched_at = keys, time.monotonic()
        log.debug("fetched %s signing key(s) from %s", len(keys), self.uri)

    def key(self, kid: str):
        with self._lock:
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < JWKS_MIN_REFRESH_S:
                # The issuer just failed to answer: do not make every request wait on it.
                raise Unauthenticated(self._failure)
            age = None if self._fetched_at is None else now - self._fetched_at
            if age is None or age > self.ttl:
                self._fetch()
            elif kid not in self._keys and age > JWKS_MIN_REFRESH_S:
                self._fetch()
            try:
                return self._keys[kid]
            except KeyError:
                raise Unauthenticated(
                    f"the token's signing key {kid!r} is not among the issuer's keys"
                ) from None


class TokenValidator:
    """Checks RS256 bearer tokens: signature (JWKS), issuer, audience, exp and nbf."""

    def __init__(self, *, issuer: str, audience: str, jwks: JwksCache, leeway: int = CLOCK_SKEW_S):
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.leeway = leeway

    @classmethod
    def from_settings(cls, env: dict[str, str] | None = None) -> TokenValidator:
        """From ``DR_AUTH_ISSUER``, ``DR_AUTH_AUDIENCE`` and ``DR_AUTH_JWKS_URI``."""
        env = os.environ if env is None else env
        missing = [
            n for n in ("DR_AUTH_ISSUER", "DR_AUTH_AUDIENCE", "DR_AUTH_JWKS_URI") if not env.get(n)
        ]
        if missing:
            raise AuthConfigError(f"bearer tokens cannot be checked: {', '.join(missing)} unset")
        return cls(
            issuer=env["DR_AUTH_ISSUER"],
            audience=env["DR_AUTH_AUDIENCE"],
            jwks=JwksCache(env["DR_AUTH_JWKS_URI"]),
        )

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization: Bearer ...`` header.

        :raises Unauthenticated: no header, not a bearer token, or a token that fails a check.
        """
        token = bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"bearer token is not a JWT: {exc}") from None
        if header.get("alg") != "RS256":
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token header has no key id (kid)")
        key = self.jwks.key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"token audience is not {self.audience}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"token issuer is not {self.issuer}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"token is not valid: {exc}") from None
        return principal_from_claims(claims)


def bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise Unauthenticated("missing bearer token (Authorization header)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header is not 'Bearer <token>'")
    return token.strip()


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    subject = claims.get("oid") or claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("token names no subject (oid or sub)")
    names = (claims.get("preferred_username"), claims.get("name"))
    name = next((n for n in names if isinstance(n, str) and n), subject)
    roles = claims.get("roles") or []
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list | tuple):
        raise Unauthenticated("token's roles claim is not a list of role names")
    return Principal(
        subject=subject,
        name=name,
        roles=tuple(r for r in roles if isinstance(r, str)),
        tenant=claims.get("tid") if isinstance(claims.get("tid"), str) else None,
    )


# ---------------------------------------------------------------------------------------
# Roles and four-eyes.


def require_role(principal: Principal, *roles: str) -> None:
    """:raises Forbidden: the principal holds none of ``roles``."""
    if not any(principal.has_role(r) for r in roles):
        raise Forbidden(f"{principal.name} needs the role {' or '.join(roles)}")


def is_declarer(principal: Principal, declared_by: str | None) -> bool:
    if not declared_by:
        return False
    wanted = declared_by.strip().lower()
    return wanted in (principal.subject.lower(), principal.name.lower())


def authorize_gate_decision(
    principal: Principal, gate: Gate, policy: GatePolicy, *, declared_by: str | None
) -> None:
    """May this person decide this gate? Holds one of the gate's roles and did not declare.

    :raises Forbidden: with the reason.
    """
    if is_declarer(principal, declared_by):
        raise Forbidden(
            f"{principal.name} declared this incident and cannot decide its {gate.value} gate "
            "(four-eyes)"
        )
    if not policy.roles & set(principal.roles):
        raise Forbidden(
            f"{principal.name} holds none of the roles of the {gate.value} gate: "
            f"{', '.join(sorted(policy.roles))}"
        )


class GateTally(BaseModel):
    """Where a gate stands given the decisions so far, with the sentence that says why."""

    approved: bool
    rejected: bool
    approvers: list[str]
    needed: int
    missing_roles: list[str] = Field(default_factory=list)
    reason: str


def tally_gate(
    decisions: Iterable[ApprovalDecision],
    requirement: GateRequirement,
    *,
    declared_by: str | None = None,
) -> GateTally:
    """Count distinct approvers (the declarer never counts) against the gate's requirement.

    A single reject decides the gate: it is a person saying stop.
    """
    decisions = list(decisions)
    for d in decisions:
        if d.decision == Decision.REJECT and not is_declarer(d.approver, declared_by):
            comment = f": {d.comment}" if d.comment else ""
            return GateTally(
                approved=False,
                rejected=True,
                approvers=[],
                needed=requirement.required_approvals,
                reason=f"{d.approver.name} rejected the {d.gate.value} gate{comment}.",
            )
    people: dict[str, Principal] = {}
    for d in decisions:
        if d.decision == Decision.APPROVE and not is_declarer(d.approver, declared_by):
            people.setdefault(d.approver.subject, d.approver)
    approvers = list(people.values())
    names = [p.name for p in approvers]
    missing = _uncovered_roles(approvers, [r.value for r in requirement.required_roles])
    needed = requirement.required_approvals
    if len(approvers) >= needed and not missing:
        return GateTally(
            approved=True,
            rejected=False,
            approvers=names,
            needed=needed,
            reason=f"Approved by {', '.join(names)} ({len(names)} of {needed} required).",
        )
    parts = [f"{len(approvers)} of {needed} distinct approvers so far"]
    if missing:
        parts.append(f"still needs a {' and a '.join(missing)}")
    return GateTally(
        approved=False,
        rejected=False,
        approvers=names,
        needed=needed,
        missing_roles=missing,
        reason="Waiting: " + "; ".join(parts) + ".",
    )


def _uncovered_roles(approvers: list[Principal], roles: list[str]) -> list[str]:
    """Required roles left uncovered by the best assignment of one distinct person per role."""
    if not roles:
        return []
    best = list(roles)
    size = min(len(approvers), len(roles))
    for people in itertools.permutations(approvers, size):
        for chosen in itertools.permutations(roles, size):
            uncovered = list(roles)
            for person, role in zip(people, chosen, strict=True):
                if person.has_role(role):
                    uncovered.remove(role)
            if len(uncovered) < len(best):
                best = uncovered
            if not best:
                return []
    return best


# ---------------------------------------------------------------------------------------
# Card action tokens.


class ActionClaims(BaseModel):
    """What a card action token grants: one decision at one gate of one incident."""

    token_id: str
    incident_id: str
    gate: Gate
    decision: Decision
    expires_at: datetime


class TokenUses(Protocol):
    def use(self, token_id: str, *, incident_id: str, expires_at: datetime) -> bool: ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ActionTokenSigner:
    """Issues and checks card action tokens: ``v1.<payload>.<hmac-sha256>``."""

    def __init__(self, key: bytes):
        if len(key) < MIN_ACTION_KEY_BYTES:
            raise AuthConfigError(
                f"the action token key must be at least {MIN_ACTION_KEY_BYTES} bytes"
            )
        self._key = key

    @classmethod
    def from_settings(cls, env: dict[str, str] | None = None) -> ActionTokenSigner:
        env = os.environ if env is None else env
        value = env.get("DR_ACTION_TOKEN_KEY")
        if not value:
            raise AuthConfigError("DR_ACTION_TOKEN_KEY is not set: card actions cannot be signed")
        return cls(value.encode())

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(
        self,
        incident_id: str,
        gate: Gate,
        decision: Decision,
        *,
        ttl: timedelta,
        now: datetime | None = None,
    ) -> str:
        expires = (now or datetime.now(UTC)) + ttl
        body = {
            "jti": secrets.token_urlsafe(18),
            "inc": incident_id,
            "gate": Gate(gate).value,
            "dec": Decision(decision).value,
            "exp": int(expires.timestamp()),
        }
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{ACTION_TOKEN_PREFIX}.{payload}.{self._sign(payload)}"

    def verify(
        self,
        token: str,
        *,
        incident_id: str | None = None,
        gate: Gate | None = None,
        now: datetime | None = None,
    ) -> ActionClaims:
        """Check signature, expiry and (when given) the incident and gate it is bound to.

        :raises Unauthenticated: forged, malformed, expired or bound to something else.
        """
        well_formed = isinstance(token, str) and token.isascii()
        well_formed = well_formed and len(token) <= MAX_ACTION_TOKEN_CHARS
        parts = token.split(".") if well_formed else []
        if len(parts) != 3 or parts[0] != ACTION_TOKEN_PREFIX:
            raise Unauthenticated("action token is malformed")
        if not hmac.compare_digest(self._sign(parts[1]), parts[2]):
            raise Unauthenticated("action token signature does not verify")
        try:
            body = json.loads(_unb64(parts[1]))
            claims = ActionClaims(
                token_id=body["jti"],
                incident_id=body["inc"],
                gate=body["gate"],
                decision=body["dec"],
                expires_at=datetime.fromtimestamp(body["exp"], UTC),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated(f"action token payload is unreadable: {exc}") from None
        if (now or datetime.now(UTC)) >= claims.expires_at:
            raise Unauthenticated("action token has expired")
        if incident_id is not None and claims.incident_id != incident_id:
            raise Unauthenticated("action token belongs to another incident")
        if gate is not None and claims.gate != Gate(gate):
            raise Unauthenticated("action token belongs to another gate")
        return claims

    def spend(self, token: str, uses: TokenUses, **bound: Any) -> ActionClaims:
        """Verify, then mark used; a second use of the same token fails.

        :raises Unauthenticated: not valid, or already used.
        """
        claims = self.verify(token, **bound)
        if not uses.use(
            claims.token_id, incident_id=claims.incident_id, expires_at=claims.expires_at
        ):
            raise Unauthenticated("action token was already used")
        return claims
