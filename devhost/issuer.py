"""A local token issuer shaped like Entra ID: an RSA key in the state dir, a JWKS, minted tokens.

devhost serves the keys at ``{DR_HOST_URL}/.devhost/issuer/keys`` (and an OpenID discovery
document beside them), so the app checks tokens exactly as it would against Entra ID. The
issuer string does not depend on the host's port, so ``drctl token`` can mint a token without
asking a running devhost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

log = logging.getLogger(__name__)

LOCAL_TENANT = "00000000-0000-0000-0000-0000000000aa"
ISSUER = f"https://login.devhost.local/{LOCAL_TENANT}/v2.0"
AUDIENCE = "api://odoo-finance-dr"
KEYS_PATH = "/.devhost/issuer/keys"
DISCOVERY_PATH = "/.devhost/issuer/.well-known/openid-configuration"
DEFAULT_HOST_URL = "http://127.0.0.1:7071"


class LocalIssuer:
    """Mints RS256 tokens with ``roles``, ``oid``, ``preferred_username`` like Entra ID does."""

    def __init__(self, state_dir: str | Path, *, host_url: str | None = None):
        self.state_dir = Path(state_dir)
        self.folder = self.state_dir / "issuer"
        self.host_url = (host_url or os.environ.get("DR_HOST_URL") or DEFAULT_HOST_URL).rstrip("/")
        self._key: rsa.RSAPrivateKey | None = None

    @classmethod
    def from_serve_context(cls, ctx: Any) -> LocalIssuer:
        return cls(ctx.state_dir, host_url=ctx.host_url)

    # -- key --------------------------------------------------------------------------

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The signing key, created in the state dir on first use and reused afterwards."""
        if self._key is None:
            path = self.folder / "signing-key.pem"
            if path.exists():
                self._key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(pem)
                tmp.chmod(0o600)
                tmp.replace(path)
                self._key = key
                log.info("local issuer created a signing key in %s", path)
        return self._key

    @property
    def kid(self) -> str:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(public).hexdigest()[:16]

    def jwks(self) -> dict:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def action_token_key(self) -> str:
        """The HMAC key for card action tokens, generated into the state dir once."""
        path = self.folder / "action-token.key"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    # -- tokens -----------------------------------------------------------------------

    def mint(
        self,
        user: str,
        roles: list[str] | tuple[str, ...] = (),
        ttl: float = 3600,
        *,
        oid: str | None = None,
        name: str | None = None,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        not_before: datetime | None = None,
        now: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed token for ``user`` with ``roles``, valid ``ttl`` seconds.

        ``oid`` defaults to a stable id derived from the user name, so the same user is the
        same subject in every token.
        """
        issued = now or datetime.now(UTC)
        claims = {
            "iss": issuer,
            "aud": audience,
            "iat": int(issued.timestamp()),
            "nbf": int((not_before or issued).timestamp()),
            "exp": int((issued + timedelta(seconds=ttl)).timestamp()),
            "sub": oid or self.subject_of(user),
            "oid": oid or self.subject_of(user),
            "tid": LOCAL_TENANT,
            "preferred_username": user,
            "name": name or user,
            "roles": list(roles),
            "ver": "2.0",
            **(extra or {}),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    @staticmethod
    def subject_of(user: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"devhost-user:{user.lower()}"))

    # -- devhost service --------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        """App settings that make the app trust this issuer."""
        values = {
            "DR_AUTH_ISSUER": ISSUER,
            "DR_AUTH_AUDIENCE": AUDIENCE,
            "DR_AUTH_JWKS_URI": f"{self.host_url}{KEYS_PATH}",
        }
        if not os.environ.get("DR_ACTION_TOKEN_KEY"):
            values["DR_ACTION_TOKEN_KEY"] = self.action_token_key()
        return values

    def discovery(self) -> dict:
        return {
            "issuer": ISSUER,
            "jwks_uri": f"{self.host_url}{KEYS_PATH}",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["pairwise"],
        }

    def routes(self) -> list:
        """aiohttp routes for the JWKS and the discovery document."""
        from aiohttp import web

        async def keys(_request):
            return web.json_response(self.jwks())

        async def discovery(_request):
            return web.json_response(self.discovery())

        return [web.get(KEYS_PATH, keys), web.get(DISCOVERY_PATH, discovery)]

    def start(self) -> None:
        """Nothing to run: the key is made on first use, the routes are served by devhost."""
        _ = self.key

    def stop(self) -> None:
        """Nothing to stop."""
