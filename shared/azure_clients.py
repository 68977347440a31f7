"""Azure SDK clients built from app settings: public Azure, or local Azure under devhost.

One code path: with ``DR_ARM_ENDPOINT`` unset the clients talk to public Azure with
``DefaultAzureCredential``; with it set they talk to that endpoint with the static bearer token
``DR_ARM_STATIC_TOKEN`` and trust the CA bundle ``DR_CA_BUNDLE``. Nothing else differs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.core import PipelineClient
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.rest import HttpRequest
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.secrets import SecretClient
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
    from azure.mgmt.trafficmanager import TrafficManagerManagementClient

log = logging.getLogger(__name__)

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
STATIC_TOKEN_LIFETIME_S = 3600


class AzureSettings(BaseModel):
    """Where the Azure calls go and how they authenticate (docs/configuration.md)."""

    arm_endpoint: str | None = Field(default=None, description="DR_ARM_ENDPOINT")
    ca_bundle: str | None = Field(default=None, description="DR_CA_BUNDLE")
    static_token: str | None = Field(default=None, description="DR_ARM_STATIC_TOKEN")
    verify_challenge_resource: bool = Field(
        default=True, description="DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AzureSettings:
        env = os.environ if env is None else env
        verify = env.get("DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "true").strip().lower()
        if verify not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(
                f"DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE must be true or false, not {verify!r}"
            )
        return cls(
            arm_endpoint=env.get("DR_ARM_ENDPOINT") or None,
            ca_bundle=env.get("DR_CA_BUNDLE") or None,
            static_token=env.get("DR_ARM_STATIC_TOKEN") or None,
            verify_challenge_resource=verify in ("true", "1", "yes"),
        )

    @property
    def endpoint(self) -> str:
        return (self.arm_endpoint or PUBLIC_ARM_ENDPOINT).rstrip("/")

    def transport_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every client gets: the CA bundle to trust, when one is set."""
        return {"connection_verify": self.ca_bundle} if self.ca_bundle else {}


class StaticTokenCredential:
    """A TokenCredential that always hands out one fixed bearer token (local Azure)."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("a static token credential needs a non-empty token")
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + STATIC_TOKEN_LIFETIME_S)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + STATIC_TOKEN_LIFETIME_S)

    def close(self) -> None:
        return None

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def credential(settings: AzureSettings | None = None) -> TokenCredential:
    """The static token when one is configured, else ``DefaultAzureCredential``."""
    settings = settings or AzureSettings.from_env()
    if settings.static_token:
        return StaticTokenCredential(settings.static_token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _arm_kwargs(settings: AzureSettings, extra: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"base_url": settings.endpoint, **settings.transport_kwargs()}
    kwargs.update(extra)
    return kwargs


def postgres_client(
    subscription_id: str, settings: AzureSettings | None = None, **kwargs: Any
) -> PostgreSQLManagementClient:
    """PostgreSQL flexible servers (azure-mgmt-postgresqlflexibleservers)."""
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

    settings = settings or AzureSettings.from_env()
    return PostgreSQLManagementClient(
        credential(settings), subscription_id, **_arm_kwargs(settings, kwargs)
    )


def trafficmanager_client(
    subscription_id: str, settings: AzureSettings | None = None, **kwargs: Any
) -> TrafficManagerManagementClient:
    """Traffic Manager profiles and endpoints (azure-mgmt-trafficmanager)."""
    from azure.mgmt.trafficmanager import TrafficManagerManagementClient

    settings = settings or AzureSettings.from_env()
    return TrafficManagerManagementClient(
        credential(settings), subscription_id, **_arm_kwargs(settings, kwargs)
    )


def containerservice_client(
    subscription_id: str, settings: AzureSettings | None = None, **kwargs: Any
) -> ContainerServiceClient:
    """AKS managed clusters and agent pools (azure-mgmt-containerservice)."""
    from azure.mgmt.containerservice import ContainerServiceClient

    settings = settings or AzureSettings.from_env()
    return ContainerServiceClient(
        credential(settings), subscription_id, **_arm_kwargs(settings, kwargs)
    )


def secret_client(
    vault_url: str, settings: AzureSettings | None = None, **kwargs: Any
) -> SecretClient:
    """Key Vault secrets; the challenge's resource is checked unless the settings say not to."""
    from azure.keyvault.secrets import SecretClient

    settings = settings or AzureSettings.from_env()
    return SecretClient(
        vault_url,
        credential(settings),
        verify_challenge_resource=settings.verify_challenge_resource,
        **settings.transport_kwargs(),
        **kwargs,
    )


class ArmClient:
    """A plain ARM client for resources without a typed SDK here (management locks, ...).

    ``request`` sends JSON and returns ``(status, body)``; an error answer raises
    ``HttpResponseError`` carrying ARM's error code and message.
    """

    def __init__(self, settings: AzureSettings | None = None, *, retry_total: int = 3):
        self.settings = settings or AzureSettings.from_env()
        policies = [
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker="odoo-finance-dr-arm"),
            ContentDecodePolicy(),
            RetryPolicy(retry_total=retry_total),
            BearerTokenCredentialPolicy(credential(self.settings), ARM_SCOPE),
        ]
        self._client = PipelineClient(
            self.settings.endpoint, policies=policies, **self.settings.transport_kwargs()
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        api_version: str,
        body: Any = None,
        timeout_s: float = 30,
    ) -> tuple[int, Any]:
        url = f"{self.settings.endpoint}{path}"
        request = HttpRequest(
            method,
            url,
            params={"api-version": api_version},
            json=body if body is not None else None,
        )
        response = self._client.send_request(
            request, connection_timeout=timeout_s, read_timeout=timeout_s
        )
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        text = response.text()
        return response.status_code, (response.json() if text else None)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ArmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
