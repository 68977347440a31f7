"""Bearer tokens from the local issuer over a real JWKS endpoint; four-eyes; action tokens."""

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import requests
from aiohttp import web

from devhost.issuer import AUDIENCE, ISSUER, KEYS_PATH, LocalIssuer
from devhost.pg import free_port
from shared.auth import (
    ActionTokenSigner,
    AuthConfigError,
    Forbidden,
    JwksCache,
    TokenValidator,
    Unauthenticated,
    authorize_gate_decision,
    require_role,
    tally_gate,
)
from shared.config import GateRequirement, load_config
from shared.models import ApprovalDecision, Decision, Gate, Principal, Role, RunbookPath

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


class ServedIssuer:
    """The issuer's aiohttp routes on a free port, in a thread of their own."""

    def __init__(self, issuer: LocalIssuer):
        self.issuer = issuer
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.add_routes(self.issuer.routes())
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory) -> LocalIssuer:
    return LocalIssuer(tmp_path_factory.mktemp("issuer"), host_url="http://127.0.0.1:1")


@pytest.fixture(scope="module")
def validator(issuer):
    with ServedIssuer(issuer) as served:
        issuer.host_url = f"http://127.0.0.1:{served.port}"
        yield TokenValidator.from_settings(issuer.settings())


def test_valid_token_gives_subject_name_and_roles(issuer, validator):
    token = issuer.mint("alice", [Role.APPROVER.value])
    principal = validator.authenticate(f"Bearer {token}")
    assert principal.name == "alice" and principal.roles == ("DR.Approver",)
    assert principal.subject == issuer.subject_of("alice")


def test_discovery_document_names_issuer_and_keys(issuer, validator):
    import requests

    base = issuer.host_url
    document = requests.get(f"{base}/.devhost/issuer/.well-known/openid-configuration", timeout=5)
    assert document.json()["issuer"] == ISSUER
    assert document.json()["jwks_uri"] == f"{base}{KEYS_PATH}"
    assert requests.get(f"{base}{KEYS_PATH}", timeout=5).json() == issuer.jwks()


def test_key_is_kept_in_the_state_dir_and_reused(issuer):
    again = LocalIssuer(issuer.state_dir)
    assert again.kid == issuer.kid and again.jwks() == issuer.jwks()


def test_settings_point_at_the_served_keys(issuer, monkeypatch):
    monkeypatch.delenv("DR_ACTION_TOKEN_KEY", raising=False)
    values = issuer.settings()
    assert values["DR_AUTH_ISSUER"] == ISSUER and values["DR_AUTH_AUDIENCE"] == AUDIENCE
    assert values["DR_AUTH_JWKS_URI"] == f"{issuer.host_url}{KEYS_PATH}"
    assert len(values["DR_ACTION_TOKEN_KEY"]) >= 32


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Basic abc", "not 'Bearer <token>'"),
        ("Bearer not-a-jwt", "not a JWT"),
    ],
)
def test_missing_or_malformed_header_is_unauthenticated(validator, header, message):
    with pytest.raises(Unauthenticated, match=message):
        validator.authenticate(header)


def test_expired_token_is_unauthenticated(issuer, validator):
    token = issuer.mint(
        "alice", ["DR.Approver"], ttl=60, now=datetime.now(UTC) - timedelta(hours=2)
    )
    with pytest.raises(Unauthenticated, match="expired"):
        validator.authenticate(f"Bearer {token}")


def test_token_not_valid_yet_is_unauthenticated(issuer, validator):
    token = issuer.mint("alice", [], not_before=datetime.now(UTC) + timedelta(hours=1), ttl=7200)
    with pytest.raises(Unauthenticated, match="not valid yet"):
        validator.authenticate(f"Bearer {token}")


def test_wrong_audience_and_issuer_are_unauthenticated(issuer, validator):
    with pytest.raises(Unauthenticated, match="audience"):
        validator.authenticate("Bearer " + issuer.mint("a", [], audience="api://other"))
    with pytest.raises(Unauthenticated, match="issuer"):
        validator.authenticate("Bearer " + issuer.mint("a", [], issuer="https://evil/v2.0"))


def test_token_signed_by_another_key_is_unauthenticated(issuer, validator, tmp_path):
    other = LocalIssuer(tmp_path)
    forged = jwt.encode(
        jwt.decode(issuer.mint("a", []), options={"verify_signature": False}),
        other.key,
        algorithm="RS256",
        headers={"kid": issuer.kid},
    )
    with pytest.raises(Unauthenticated, match="signature"):
        validator.authenticate(f"Bearer {forged}")
    with pytest.raises(Unauthenticated, match="not among the issuer's keys"):
        validator.authenticate("Bearer " + other.mint("a", []))


def test_symmetric_algorithm_is_refused(validator):
    token = jwt.encode({"sub": "x"}, "secret-secret-secret-secret-secret", algorithm="HS256")
    with pytest.raises(Unauthenticated, match="not RS256"):
        validator.authenticate(f"Bearer {token}")


def test_unreachable_jwks_is_unauthenticated_not_a_crash():
    cache = JwksCache(f"http://127.0.0.1:{free_port()}/keys", timeout=1)
    with pytest.raises(Unauthenticated, match="cannot fetch the signing keys"):
        cache.key("any")


def test_missing_settings_are_named():
    with pytest.raises(AuthConfigError, match="DR_AUTH_JWKS_URI"):
        TokenValidator.from_settings({"DR_AUTH_ISSUER": "x", "DR_AUTH_AUDIENCE": "y"})


# -- roles and four-eyes ----------------------------------------------------------------

ALICE = Principal(subject="a-1", name="alice", roles=("DR.Approver",))
BOB = Principal(subject="b-2", name="bob", roles=("DR.Approver",))
SAM = Principal(subject="s-3", name="sam", roles=("Security.Officer",))
BOTH = Principal(subject="z-4", name="zoe", roles=("Security.Officer", "DR.Approver"))
FIONA = Principal(subject="f-5", name="fiona", roles=("Finance.Controller",))
POLICIES = load_config().environment("prod-eu").approvals


def approve(who: Principal, gate=Gate.RECOVERY, decision=Decision.APPROVE, comment=""):
    return ApprovalDecision(
        incident_id="prod-eu.security.1",
        gate=gate,
        decision=decision,
        approver=who,
        comment=comment,
        decided_at=T0,
    )


def test_role_is_required():
    require_role(ALICE, "DR.Approver")
    with pytest.raises(Forbidden, match="needs the role DR.Operator"):
        require_role(ALICE, "DR.Operator")


def test_declarer_cannot_decide_a_gate_of_their_own_incident():
    with pytest.raises(Forbidden, match="four-eyes"):
        authorize_gate_decision(ALICE, Gate.RECOVERY, POLICIES[Gate.RECOVERY], declared_by="a-1")
    with pytest.raises(Forbidden, match="four-eyes"):
        authorize_gate_decision(ALICE, Gate.RECOVERY, POLICIES[Gate.RECOVERY], declared_by="Alice")
    authorize_gate_decision(BOB, Gate.RECOVERY, POLICIES[Gate.RECOVERY], declared_by="a-1")


def test_gate_role_is_required_to_decide():
    with pytest.raises(Forbidden, match="holds none of the roles of the signoff gate"):
        authorize_gate_decision(ALICE, Gate.SIGNOFF, POLICIES[Gate.SIGNOFF], declared_by="system")
    authorize_gate_decision(FIONA, Gate.SIGNOFF, POLICIES[Gate.SIGNOFF], declared_by="system")


def test_two_distinct_approvers_are_needed_and_one_person_twice_counts_once():
    need = GateRequirement(required_approvals=2)
    assert not tally_gate([approve(ALICE), approve(ALICE)], need).approved
    tally = tally_gate([approve(ALICE), approve(BOB)], need)
    assert tally.approved and tally.approvers == ["alice", "bob"]
    assert "2 of 2" in tally.reason


def test_declarer_approval_never_counts():
    need = GateRequirement(required_approvals=1)
    assert not tally_gate([approve(ALICE)], need, declared_by="a-1").approved


def test_one_reject_decides_the_gate():
    tally = tally_gate(
        [approve(ALICE), approve(BOB, decision=Decision.REJECT, comment="lag")],
        GateRequirement(required_approvals=1),
    )
    assert (
        tally.rejected
        and not tally.approved
        and tally.reason == "bob rejected the recovery gate: lag."
    )


def test_security_incident_needs_a_security_officer_and_a_dr_approver():
    need = POLICIES[Gate.RECOVERY].requirement(RunbookPath.SECURITY_INCIDENT)
    waiting = tally_gate([approve(ALICE), approve(BOB)], need)
    assert not waiting.approved and waiting.missing_roles == [Role.SECURITY_OFFICER.value]
    assert tally_gate([approve(ALICE), approve(SAM)], need).approved
    # One person holding both roles is still one person.
    assert not tally_gate([approve(BOTH)], need).approved
    assert tally_gate([approve(BOTH), approve(ALICE)], need).approved


# -- action tokens ----------------------------------------------------------------------

KEY = b"k" * 32


class Uses:
    def __init__(self):
        self.seen = set()

    def use(self, token_id, *, incident_id, expires_at):
        if token_id in self.seen:
            return False
        self.seen.add(token_id)
        return True


def test_action_token_is_bound_to_incident_gate_and_decision():
    signer = ActionTokenSigner(KEY)
    token = signer.issue("prod-eu.data.1", Gate.CUTOVER, Decision.APPROVE, ttl=timedelta(hours=1))
    claims = signer.verify(token, incident_id="prod-eu.data.1", gate=Gate.CUTOVER)
    assert claims.decision == Decision.APPROVE and claims.gate == Gate.CUTOVER
    with pytest.raises(Unauthenticated, match="another incident"):
        signer.verify(token, incident_id="prod-eu.data.2")
    with pytest.raises(Unauthenticated, match="another gate"):
        signer.verify(token, gate=Gate.SIGNOFF)


def test_action_token_expires():
    signer = ActionTokenSigner(KEY)
    token = signer.issue("i", Gate.RPO, Decision.REJECT, ttl=timedelta(minutes=5), now=T0)
    signer.verify(token, now=T0 + timedelta(minutes=4))
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(token, now=T0 + timedelta(minutes=5))


def test_tampered_or_foreign_action_token_is_refused():
    signer = ActionTokenSigner(KEY)
    token = signer.issue("i", Gate.RPO, Decision.REJECT, ttl=timedelta(minutes=5))
    prefix, payload, mac = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(Unauthenticated, match="signature"):
        signer.verify(f"{prefix}.{flipped}.{mac}")
    with pytest.raises(Unauthenticated, match="signature"):
        ActionTokenSigner(b"x" * 32).verify(token)
    with pytest.raises(Unauthenticated, match="malformed"):
        signer.verify("garbage")


@pytest.mark.parametrize(
    "text",
    ["v1.x.\u00e9", "v1.\u00e9.y", "v1.\udcff.y", "v1.x." + "y" * 5000, "", "v2.x.y"],
    ids=["not-ascii-mac", "not-ascii-payload", "lone-surrogate", "overlong", "empty", "version"],
)
def test_text_that_is_no_action_token_is_malformed_not_an_error(text):
    with pytest.raises(Unauthenticated, match="malformed"):
        ActionTokenSigner(KEY).verify(text)


def test_action_token_is_spent_once():
    signer, uses = ActionTokenSigner(KEY), Uses()
    token = signer.issue("i", Gate.SIGNOFF, Decision.APPROVE, ttl=timedelta(minutes=5))
    signer.spend(token, uses)
    with pytest.raises(Unauthenticated, match="already used"):
        signer.spend(token, uses)


def test_short_action_key_is_refused():
    with pytest.raises(AuthConfigError, match="at least 32 bytes"):
        ActionTokenSigner(b"short")
    with pytest.raises(AuthConfigError, match="DR_ACTION_TOKEN_KEY"):
        ActionTokenSigner.from_settings({})


class FakeSession:
    """Answers JWKS requests from a list of documents, counting the calls."""

    def __init__(self, *documents):
        self.documents, self.calls = list(documents), 0

    def get(self, uri, timeout):
        assert timeout > 0
        self.calls += 1
        document = self.documents[min(self.calls, len(self.documents)) - 1]
        return type(
            "Answer", (), {"raise_for_status": lambda self: None, "json": lambda self: document}
        )()


def test_keys_are_cached_and_refetched_for_a_new_key_id(issuer, tmp_path, monkeypatch):
    rotated = LocalIssuer(tmp_path)
    session = FakeSession(issuer.jwks(), {"keys": issuer.jwks()["keys"] + rotated.jwks()["keys"]})
    cache = JwksCache("http://keys", session=session)
    cache.key(issuer.kid)
    cache.key(issuer.kid)
    assert session.calls == 1
    with pytest.raises(Unauthenticated):
        cache.key(rotated.kid)  # too soon after the last fetch to fetch again
    monkeypatch.setattr("shared.auth.JWKS_MIN_REFRESH_S", 0.0)
    assert cache.key(rotated.kid) is not None and session.calls == 2


def test_jwks_document_of_the_wrong_shape_gives_no_keys():
    cache = JwksCache("http://keys", session=FakeSession({"keys": 5}))
    with pytest.raises(Unauthenticated, match="not among the issuer's keys"):
        cache.key("any")


def test_failed_key_fetch_is_not_retried_for_every_request():
    class Down:
        calls = 0

        def get(self, uri, timeout):
            Down.calls += 1
            raise requests.ConnectionError("refused")

    cache = JwksCache("http://keys", session=Down())
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="cannot fetch the signing keys"):
            cache.key("any")
    assert Down.calls == 1
