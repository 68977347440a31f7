"""A private PostgreSQL cluster for the test session, started as the postgres user."""

import shutil
import tempfile
from pathlib import Path

import pytest

from devhost.pg import LocalPostgres, PostgresUnavailable, ensure_enterable, free_port


@pytest.fixture(scope="session")
def enterable_tmp():
    """A temporary folder that the postgres user can enter (pytest's own are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="drtests-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    # Clusters, WAL archives and base backups under it run to gigabytes: leave nothing behind.
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(enterable_tmp) -> LocalPostgres:
    """One PostgreSQL server for the session, on a free port; stopped at the end."""
    root = enterable_tmp / "pg"
    ensure_enterable(root)
    server = LocalPostgres(root / "data", free_port())
    try:
        server.init()
        server.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"tests need PostgreSQL: {exc}")
    yield server
    server.stop("immediate")
