"""The unmodified DurableOrchestrationClient against devhost's management API."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from devhost.durable.api import client_binding


def _client(host) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(client_binding(host.url, "DevhostTests", None))


async def _until(client, iid, wanted, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = await client.get_status(iid)
        if status and status.runtime_status in wanted:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{iid} never reached {wanted}")


def test_start_status_and_history_through_the_client(devhost, client_loop):
    async def scenario():
        client = _client(devhost)
        iid = await client.start_new("chain", None, "Rome")
        status = await _until(client, iid, {OrchestrationRuntimeStatus.Completed})
        assert status.output == ["Hello Rome", "Hello Hello Rome", "async Rome"]
        assert status.input_ == '"Rome"'
        full = await client.get_status(iid, show_history=True, show_history_output=True)
        types = [e["EventType"] for e in full.historyEvents]
        assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionCompleted"
        assert await client.get_status("nobody-has-this-id") is not None  # falsy, not raising

    client_loop.run_until_complete(scenario())


def test_terminate_suspend_resume_and_raise_through_the_client(devhost, client_loop):
    async def scenario():
        client = _client(devhost)
        iid = await client.start_new("wait_event", None, None)
        await _until(client, iid, {OrchestrationRuntimeStatus.Running})
        await client.suspend(iid, "hold on")
        await _until(client, iid, {OrchestrationRuntimeStatus.Suspended})
        await client.raise_event(iid, "E", "go")
        await client.resume(iid, "carry on")
        done = await _until(client, iid, {OrchestrationRuntimeStatus.Completed})
        assert done.output == '"go"'

        other = await client.start_new("wait_forever", None, None)
        await _until(client, other, {OrchestrationRuntimeStatus.Running})
        await client.terminate(other, "no longer needed")
        gone = await _until(client, other, {OrchestrationRuntimeStatus.Terminated})
        assert gone.output == "no longer needed"

    client_loop.run_until_complete(scenario())


def test_query_and_purge_by_filter_through_the_client(devhost, client_loop):
    async def scenario():
        client = _client(devhost)
        since = datetime.now(UTC) - timedelta(seconds=2)
        ids = [await client.start_new("chain", None, f"q{i}") for i in range(3)]
        for iid in ids:
            await _until(client, iid, {OrchestrationRuntimeStatus.Completed})
        found = await client.get_status_by(
            created_time_from=since,
            runtime_status=[OrchestrationRuntimeStatus.Completed],
        )
        assert set(ids) <= {s.instance_id for s in found}
        assert set(ids) <= {s.instance_id for s in await client.get_status_all()}
        purged = await client.purge_instance_history_by(
            created_time_from=since, runtime_status=[OrchestrationRuntimeStatus.Completed]
        )
        assert purged.instances_deleted >= 3
        assert not await client.get_status(ids[0])
        single = await client.start_new("chain", None, "p")
        await _until(client, single, {OrchestrationRuntimeStatus.Completed})
        assert (await client.purge_instance_history(single)).instances_deleted == 1

    client_loop.run_until_complete(scenario())


def test_restart_starts_a_new_instance_with_the_same_input(devhost, client_loop):
    async def scenario():
        client = _client(devhost)
        iid = await client.start_new("chain", None, "again")
        await _until(client, iid, {OrchestrationRuntimeStatus.Completed})
        new_id = await client.restart(iid)
        assert new_id != iid
        status = await _until(client, new_id, {OrchestrationRuntimeStatus.Completed})
        assert status.output[0] == "Hello again"

    client_loop.run_until_complete(scenario())


def test_sub_orchestration_failure_and_termination_reach_the_parent(devhost, client_loop):
    async def scenario():
        client = _client(devhost)
        parent = await client.start_new("parent_of_failing", None, None)
        status = await _until(
            client,
            parent,
            {OrchestrationRuntimeStatus.Completed, OrchestrationRuntimeStatus.Failed},
        )
        assert status.runtime_status == OrchestrationRuntimeStatus.Completed
        assert "ledger does not balance" in status.output

        waiting = await client.start_new("parent_of_waiting", None, None)
        child = f"{waiting}-child"
        await _until(client, child, {OrchestrationRuntimeStatus.Running})
        await client.terminate(child, "stopped by hand")
        status = await _until(client, waiting, {OrchestrationRuntimeStatus.Completed})
        assert "stopped by hand" in status.output

    client_loop.run_until_complete(scenario())


def test_start_webhook_with_timeout_waits_for_the_output(devhost):
    r = devhost.mgmt(
        "POST",
        "orchestrators/chain",
        params={"timeout": "10", "pollingInterval": "1"},
        data='"\\"Kyiv\\""',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200
    assert r.json()["output"][0] == "Hello Kyiv"
