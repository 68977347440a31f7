"""The Azure client factory: public Azure by default, local Azure when the settings say so."""

from __future__ import annotations

import pytest

from shared import azure_clients
from shared.azure_clients import AzureSettings, StaticTokenCredential

LOCAL = {
    "DR_ARM_ENDPOINT": "https://127.0.0.1:8443/",
    "DR_CA_BUNDLE": "/tmp/ca.pem",
    "DR_ARM_STATIC_TOKEN": "local-token",
    "DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
}


def test_without_settings_clients_go_to_public_azure_with_the_default_credential():
    settings = AzureSettings.from_env({})
    assert settings.endpoint == "https://management.azure.com"
    assert settings.transport_kwargs() == {}
    assert type(azure_clients.credential(settings)).__name__ == "DefaultAzureCredential"


def test_local_settings_give_the_static_token_the_endpoint_and_the_ca_bundle():
    settings = AzureSettings.from_env(LOCAL)
    assert settings.endpoint == "https://127.0.0.1:8443"
    assert settings.transport_kwargs() == {"connection_verify": "/tmp/ca.pem"}
    credential = azure_clients.credential(settings)
    assert isinstance(credential, StaticTokenCredential)
    assert credential.get_token("https://management.azure.com/.default").token == "local-token"
    assert credential.get_token_info("https://vault.azure.net/.default").token == "local-token"


@pytest.mark.parametrize(
    "factory",
    [
        azure_clients.postgres_client,
        azure_clients.trafficmanager_client,
        azure_clients.containerservice_client,
    ],
)
def test_management_clients_are_built_on_the_configured_endpoint(factory):
    client = factory("00000000-0000-0000-0000-000000000001", AzureSettings.from_env(LOCAL))
    try:
        assert client._config.base_url.rstrip("/") == "https://127.0.0.1:8443"
    finally:
        client.close()


def test_empty_static_token_is_refused():
    with pytest.raises(ValueError, match="non-empty token"):
        StaticTokenCredential("")
