"""Keeps one replication monitor running per configured environment (started at host start)."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from shared import runtime

log = logging.getLogger(__name__)

bp = df.Blueprint()

RUNNING = {"Running", "Pending", "ContinuedAsNew", "Suspended"}


@bp.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=True)
@bp.durable_client_input(client_name="client")
async def ensure_monitors(timer: func.TimerRequest, client: df.DurableOrchestrationClient):
    """Start the replication monitor of every environment that has none running."""
    for name in runtime.config().environments:
        instance_id = f"monitor.{name}"
        status = await client.get_status(instance_id)
        state = getattr(getattr(status, "runtime_status", None), "value", None)
        if state in RUNNING:
            continue
        await client.start_new("replication_monitor", instance_id, {"environment": name})
        log.info("replication monitor of %s started (%s)", name, instance_id)
