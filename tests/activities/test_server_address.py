"""Where a server is when ARM cannot say: Azure's conventional name on public Azure only."""

from __future__ import annotations

import socket

import pytest

from activities import database
from activities.database import ActivityError
from shared.recovery import DbServer

SERVER_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-x/providers/"
    "Microsoft.DBforPostgreSQL/flexibleServers/odoo-pg-nowhere"
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_against_local_azure_an_address_arm_cannot_give_is_not_guessed(monkeypatch):
    monkeypatch.setenv("DR_ARM_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("DR_ARM_STATIC_TOKEN", "test-no-azure")
    monkeypatch.setattr(database, "_known_addresses", {})

    with pytest.raises(ActivityError, match="odoo-pg-nowhere") as caught:
        database.server_address(DbServer(server_id=SERVER_ID))

    assert "postgres.database.azure.com" not in str(caught.value)


def test_on_public_azure_the_conventional_name_is_used_when_arm_is_silent(monkeypatch):
    monkeypatch.delenv("DR_ARM_ENDPOINT", raising=False)
    monkeypatch.setattr(database, "_known_addresses", {})

    def arm_down(server_id):
        raise ActivityError("ARM did not answer")

    monkeypatch.setattr(database, "arm_get_server", arm_down)

    host, port = database.server_address(DbServer(server_id=SERVER_ID))

    assert (host, port) == ("odoo-pg-nowhere.postgres.database.azure.com", 5432)
