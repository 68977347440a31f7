"""Key Vault secrets, data plane (7.x shapes) and the vault resource on ARM.

Each vault of the topology listens on a port of its own (``https://127.0.0.1:PORT/``), because
the SDK parses secret ids as ``/secrets/<name>/<version>`` from the vault's root. Requests
without a bearer token get Key Vault's challenge (401 with ``WWW-Authenticate: Bearer
authorization=..., resource=...``), as the SDK expects before it asks its credential for a
token. Secret values start from the topology; versions set later are kept in the state dir.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from devhost.localazure.arm import (
    ArmContext,
    ArmError,
    ArmRequest,
    ArmResponse,
    ProviderEnv,
    RawRequest,
    Route,
)
from devhost.localazure.topology import KeyVault

log = logging.getLogger(__name__)

VAULT_RESOURCE = "https://vault.azure.net"
RECOVERY_LEVEL = "Recoverable+Purgeable"


class SecretVersion(BaseModel):
    version: str = Field(default_factory=lambda: uuid.uuid4().hex)
    value: str
    contentType: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    created: int = Field(default_factory=lambda: int(time.time()))
    updated: int = Field(default_factory=lambda: int(time.time()))


class Vault:
    """One vault: its secrets (each a list of versions, newest last) and its URL."""

    def __init__(self, spec: KeyVault, store: Path):
        self.spec = spec
        self.store = store
        self.url = ""
        self.lock = threading.Lock()
        self.secrets: dict[str, list[SecretVersion]] = {}
        if store.exists():
            raw = json.loads(store.read_text())
            self.secrets = {
                name: [SecretVersion.model_validate(v) for v in versions]
                for name, versions in raw.items()
            }
        else:
            for name, secret in spec.secret_values().items():
                self.secrets[name] = [
                    SecretVersion(
                        value=secret.value, contentType=secret.contentType, tags=secret.tags
                    )
                ]
            self.save()

    def save(self) -> None:
        self.store.parent.mkdir(parents=True, exist_ok=True)
        data = {n: [v.model_dump() for v in vs] for n, vs in self.secrets.items()}
        self.store.write_text(json.dumps(data))
        self.store.chmod(0o600)

    def bundle(self, name: str, version: SecretVersion, *, with_value: bool = True) -> dict:
        body: dict[str, Any] = {
            "id": f"{self.url}/secrets/{name}/{version.version}",
            "attributes": {
                "enabled": version.enabled,
                "created": version.created,
                "updated": version.updated,
                "recoveryLevel": RECOVERY_LEVEL,
                "recoverableDays": 90,
            },
            "tags": version.tags,
        }
        if with_value:
            body["value"] = version.value
        if version.contentType:
            body["contentType"] = version.contentType
        return body


class KeyVaultProvider:
    """The vaults of the topology: a data-plane listener each, and their ARM resources."""

    name = "keyvault"

    def __init__(self, env: ProviderEnv):
        self.env = env
        self.topology = env.state.topology
        self.vaults: dict[str, Vault] = {}
        for spec in self.topology.keyVaults:
            store = env.state_dir / "keyvault" / f"{spec.name.lower()}.json"
            self.vaults[spec.name.lower()] = Vault(spec, store)
        env.state.register_dump(self.name, self.dump)

    def start(self) -> None:
        for vault in self.vaults.values():
            vault.url = self.env.listen(lambda req, v=vault: self.handle(v, req)).rstrip("/")
            log.info("key vault %s on %s", vault.spec.name, vault.url)

    def settings(self) -> dict[str, str]:
        urls = {v.spec.name: v.url + "/" for v in self.vaults.values()}
        values = {"DR_KEYVAULT_URLS": json.dumps(urls)}
        if urls:
            values["DR_KEYVAULT_URL"] = next(iter(urls.values()))
        return values

    def dump(self) -> dict[str, Any]:
        return {
            v.spec.name: {
                "url": v.url,
                "secrets": {n: [x.version for x in vs] for n, vs in v.secrets.items()},
            }
            for v in self.vaults.values()
        }

    # -- data plane --------------------------------------------------------------------------

    def handle(self, vault: Vault, req: RawRequest) -> ArmResponse:
        if not self._authorized(req):
            return self._challenge()
        parts = [p for p in req.path.split("/") if p]
        if not parts or parts[0] != "secrets":
            raise ArmError(404, "NotFound", f"local Key Vault does not serve {req.path}")
        try:
            body = json.loads(req.body) if req.body else None
        except ValueError as exc:
            raise ArmError(400, "BadParameter", "the request body is not JSON") from exc
        if req.method == "GET" and len(parts) == 1:
            return self._list(vault)
        name = parts[1]
        if req.method == "GET" and len(parts) == 3 and parts[2] == "versions":
            return self._versions(vault, name)
        if req.method == "GET" and len(parts) in (2, 3):
            return self._get(vault, name, parts[2] if len(parts) == 3 else None)
        if req.method == "PUT" and len(parts) == 2:
            return self._set(vault, name, body)
        # Limitation: no delete, recover, purge or attribute updates; the runbooks only read
        # secrets and set new versions.
        raise ArmError(405, "BadRequest", f"{req.method} {req.path} is not supported here")

    def _authorized(self, req: RawRequest) -> bool:
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip(), self.env.static_token
        )

    def _challenge(self) -> ArmResponse:
        authority = f"https://login.microsoftonline.com/{self.topology.tenant}"
        header = f'Bearer authorization="{authority}", resource="{VAULT_RESOURCE}"'
        body = {
            "error": {
                "code": "Unauthorized",
                "message": "AKV10000: Request is missing a Bearer or PoP token.",
            }
        }
        return ArmResponse(401, body, {"WWW-Authenticate": header})

    @staticmethod
    def _versions_of(vault: Vault, name: str) -> list[SecretVersion]:
        versions = vault.secrets.get(name)
        if not versions:
            raise ArmError(404, "SecretNotFound", f"A secret with (name/id) {name} was not found")
        return versions

    def _get(self, vault: Vault, name: str, version: str | None) -> ArmResponse:
        with vault.lock:
            versions = self._versions_of(vault, name)
            if version is None:
                return ArmResponse(200, vault.bundle(name, versions[-1]))
            for candidate in versions:
                if candidate.version == version:
                    return ArmResponse(200, vault.bundle(name, candidate))
        raise ArmError(
            404, "SecretNotFound", f"A secret with (name/id) {name}/{version} was not found"
        )

    def _set(self, vault: Vault, name: str, body: Any) -> ArmResponse:
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            raise ArmError(400, "BadParameter", "a secret needs a string 'value'")
        attributes = body.get("attributes") or {}
        version = SecretVersion(
            value=body["value"],
            contentType=body.get("contentType"),
            tags={str(k): str(v) for k, v in (body.get("tags") or {}).items()},
            enabled=bool(attributes.get("enabled", True)),
        )
        with vault.lock:
            vault.secrets.setdefault(name, []).append(version)
            vault.save()
        log.info("key vault %s: secret %s has a new version", vault.spec.name, name)
        return ArmResponse(200, vault.bundle(name, version))

    def _list(self, vault: Vault) -> ArmResponse:
        with vault.lock:
            items = []
            for name, versions in vault.secrets.items():
                item = vault.bundle(name, versions[-1], with_value=False)
                item["id"] = f"{vault.url}/secrets/{name}"
                items.append(item)
        return ArmResponse(200, {"value": items, "nextLink": None})

    def _versions(self, vault: Vault, name: str) -> ArmResponse:
        with vault.lock:
            versions = self._versions_of(vault, name)
            items = [vault.bundle(name, v, with_value=False) for v in versions]
        return ArmResponse(200, {"value": items, "nextLink": None})

    # -- ARM ---------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        base = "/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.KeyVault"
        return [
            Route(
                "GET", base + "/vaults/{vault}", self.get_vault, "Microsoft.KeyVault/vaults/read"
            ),
        ]

    def get_vault(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        vault = self.vaults.get(req.params["vault"].lower())
        rg_ok = vault is not None and (
            self.topology.resource_group_of(vault.spec).lower() == req.params["rg"].lower()
        )
        if vault is None or not rg_ok:
            raise ArmError(404, "ResourceNotFound", f"vault {req.params['vault']!r} was not found")
        return ArmResponse(
            200,
            {
                "id": req.path,
                "name": vault.spec.name,
                "type": "Microsoft.KeyVault/vaults",
                "location": vault.spec.location,
                "properties": {
                    "vaultUri": vault.url + "/",
                    "tenantId": self.topology.tenant,
                    "sku": {"family": "A", "name": "standard"},
                    "enableSoftDelete": True,
                    "provisioningState": "Succeeded",
                },
            },
        )


def create_provider(env: ProviderEnv) -> KeyVaultProvider:
    return KeyVaultProvider(env)
