"""Azurite (blob and table) for the test session, started through devhost/azurite.py."""

import shutil
import tempfile
from pathlib import Path

import pytest

from devhost.azurite import Azurite, AzuriteUnavailable


@pytest.fixture(scope="session")
def azurite() -> Azurite:
    """One Azurite for the session, data in a temporary folder; stopped at the end."""
    state = Path(tempfile.mkdtemp(prefix="drtests-azurite-", dir="/tmp"))
    server = Azurite(state)
    try:
        server.start()
    except AzuriteUnavailable as exc:
        pytest.fail(f"tests need Azurite: {exc}")
    yield server
    server.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    """The AzureWebJobsStorage connection string of the session's Azurite."""
    return azurite.settings()["AzureWebJobsStorage"]
