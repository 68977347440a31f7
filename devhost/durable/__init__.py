"""devhost's durable engine: SDK replay driven from SQLite history, and its management API.

In-process use (the management API is built on the same calls)::

    engine = Engine(state_dir / "durable.sqlite", orchestrators, activities)
    await engine.start()
    outcome = engine.start_instance("my_orchestrator", None, json.dumps({"a": 1}))
    engine.raise_event(outcome.instance_id, "Approval", json.dumps(True))
    row = await engine.wait_for(outcome.instance_id, timeout_s=30)
    status = engine.status(outcome.instance_id)  # or status_of(row)
"""

from devhost.durable.api import ManagementApi, client_binding
from devhost.durable.engine import ActivitySpec, Engine, EngineError, StartOutcome
from devhost.durable.status import InstanceStatus, status_of

__all__ = [
    "ActivitySpec",
    "Engine",
    "EngineError",
    "InstanceStatus",
    "ManagementApi",
    "StartOutcome",
    "client_binding",
    "status_of",
]
