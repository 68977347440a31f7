"""Local Key Vault: the challenge, and secrets through the real SecretClient."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from devhost.localazure import LocalAzure
from shared.azure_clients import secret_client
from tests.plugins.localazure import azure_settings, core_topology

NO_PG = ["devhost.localazure.control", "devhost.localazure.keyvault"]


@pytest.fixture
def vault(localazure_factory):
    return localazure_factory(core_topology(postgres={"servers": []}), providers=NO_PG)


def client(local: LocalAzure):
    return secret_client(local.settings()["DR_KEYVAULT_URL"], azure_settings(local))


def test_unauthenticated_request_gets_the_bearer_challenge(vault):
    settings = vault.settings()
    answer = requests.get(
        settings["DR_KEYVAULT_URL"] + "secrets/odoo-db-password",
        params={"api-version": "7.6"},
        verify=settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'authorization="https://login.microsoftonline.com/' in challenge
    assert 'resource="https://vault.azure.net"' in challenge


def test_secret_client_reads_the_topology_value_after_the_challenge(vault):
    with client(vault) as secrets:
        secret = secrets.get_secret("odoo-db-password")
    assert secret.value == "test-odoo-password"
    assert secret.name == "odoo-db-password"
    assert secret.properties.enabled is True


def test_set_secret_adds_a_version_and_the_old_one_stays_readable(vault):
    with client(vault) as secrets:
        old = secrets.get_secret("odoo-db-password")
        new = secrets.set_secret("odoo-db-password", "rotated", content_type="text/plain")
        assert new.properties.version != old.properties.version
        assert secrets.get_secret("odoo-db-password").value == "rotated"
        assert secrets.get_secret("odoo-db-password", old.properties.version).value == (
            "test-odoo-password"
        )
        versions = [
            p.version for p in secrets.list_properties_of_secret_versions("odoo-db-password")
        ]
    assert versions == [old.properties.version, new.properties.version]


def test_secrets_are_listed_without_values(vault):
    with client(vault) as secrets:
        names = sorted(p.name for p in secrets.list_properties_of_secrets())
    assert names == ["odoo-db-password", "pg-admin-password"]


def test_unknown_secret_is_not_found(vault):
    with client(vault) as secrets, pytest.raises(ResourceNotFoundError, match="SecretNotFound"):
        secrets.get_secret("no-such-secret")


def test_a_rotated_secret_survives_a_restart(vault):
    with client(vault) as secrets:
        secrets.set_secret("pg-admin-password", "rotated-before-restart")
    vault.stop()
    again = LocalAzure(vault.state_dir, vault.topology_path, providers=NO_PG).start()
    try:
        with client(again) as secrets:
            assert secrets.get_secret("pg-admin-password").value == "rotated-before-restart"
    finally:
        again.stop()


def test_challenge_resource_check_stays_on_unless_the_setting_turns_it_off():
    from shared.azure_clients import AzureSettings

    assert AzureSettings.from_env({}).verify_challenge_resource is True
    off = {"DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false"}
    assert AzureSettings.from_env(off).verify_challenge_resource is False
    with pytest.raises(ValueError, match="DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE"):
        AzureSettings.from_env({"DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "maybe"})


def test_with_the_challenge_resource_check_on_the_local_vault_is_refused(vault):
    checking = azure_settings(vault).model_copy(update={"verify_challenge_resource": True})
    with secret_client(vault.settings()["DR_KEYVAULT_URL"], checking) as secrets:
        with pytest.raises(ValueError, match="verify_challenge_resource"):
            secrets.get_secret("odoo-db-password")
