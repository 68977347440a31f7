"""Contract: every action of the runbook catalogue is an activity the Functions app registers.

``ACTIVITY_FOR_ACTION`` names the activity each action runs; the plan executor calls it by that
name, so a name without a registered activity would fail a recovery at the step, not at start.
"""

import pytest

from shared.runbooks import ACTIONS, ACTIVITY_FOR_ACTION
from tests.app_index import functions


@pytest.fixture(scope="module")
def registered() -> list[tuple[str, str]]:
    """(activity name, function name) of every activity of the app."""
    found = []
    for function in functions():
        trigger = function.get_trigger()
        if trigger is not None and trigger.type == "activityTrigger":
            found.append((trigger.activity, function.get_function_name()))
    return found


def test_every_catalogue_action_runs_a_registered_activity(registered):
    names = {activity for activity, _ in registered}
    missing = {a: n for a, n in ACTIVITY_FOR_ACTION.items() if n not in names}
    assert missing == {}


def test_every_catalogue_action_has_an_activity_name():
    assert set(ACTIVITY_FOR_ACTION) == set(ACTIONS)
    assert all(ACTIVITY_FOR_ACTION.values())


def test_activity_names_are_unique_across_the_app(registered):
    # Two activities under one name would make the executor's call ambiguous; the Functions
    # indexer refuses duplicate function names, and this checks the activity names as well.
    names = [activity for activity, _ in registered]
    assert sorted({n for n in names if names.count(n) > 1}) == []
