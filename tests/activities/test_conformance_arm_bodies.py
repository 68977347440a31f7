"""The ARM request bodies the database activities send match Microsoft's published examples."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from activities.database import pitr_body, promote_body

pytestmark = pytest.mark.conformance

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "arm" / "postgresql"


def _example(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"published samples not found at {FIXTURES} (../shared is not shipped)")
    return json.loads(path.read_text())["parameters"]


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("servers_promote_replica_forced_standalone_2025-08-01.json", "Forced"),
        ("servers_promote_replica_planned_standalone_2025-08-01.json", "Planned"),
    ],
)
def test_promotion_body_is_the_published_one(name, option):
    assert promote_body(option) == _example(name)["parameters"]


def test_point_in_time_restore_body_is_the_published_one():
    published = _example("servers_create_point_in_time_restore_2025-08-01.json")["parameters"]
    props = published["properties"]
    when = datetime.fromisoformat(props["pointInTimeUTC"].replace("Z", "+00:00"))
    body = pitr_body(published["location"], props["sourceServerResourceId"], when)
    assert body == published
