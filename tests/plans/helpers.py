"""Evidence, configuration and small runbooks that the plan tests share."""

import copy

# The plan context the repository's runbooks read (docs/runbooks.md lists every name).
_RG = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-odoo-prod/providers"
_PG = _RG + "/Microsoft.DBforPostgreSQL/flexibleServers/"
_TM = _RG + "/Microsoft.Network/trafficmanagerprofiles/tm-odoo"

CONFIG = {
    "environment": "prod-eu",
    "db": {
        "primary": {"server_id": _PG + "odoo-pg-weu", "host": "127.0.0.1", "port": 55432},
        "replica": {"server_id": _PG + "odoo-pg-neu", "host": "127.0.0.1", "port": 55433},
        "app": {"role": "odoo", "password_secret": {"name": "odoo-db-password"}},
        "database": "odoo",
        "restore_name": "odoo-pg-weu-restore",
    },
    "aks": {
        "primary": _RG + "/Microsoft.ContainerService/managedClusters/aks-odoo-weu",
        "secondary": _RG + "/Microsoft.ContainerService/managedClusters/aks-odoo-neu",
        "secondary_pool": "odoo",
        "secondary_nodes": 3,
        "idle_nodes": 1,
        "deployment": "odoo",
        "replicas": 3,
    },
    "traffic": {
        "profile": _TM,
        "primary_endpoint": {"profile_id": _TM, "name": "odoo-weu"},
        "secondary_endpoint": {
            "profile_id": _TM,
            "name": "odoo-neu",
            "endpoint_type": "ExternalEndpoints",
        },
    },
    "frontdoor_url": "http://127.0.0.1:8069",
    "secondary_region": "northeurope",
    "targets": {"rpo_s": 300, "rto_s": 3600},
    "key_vault": "kv-odoo-prod",
    "secrets": {"rotate": ["odoo-db-password", "odoo-admin"]},
    "redis": "redis-odoo-weu",
    "storage": {"account": "stodooprodweu"},
    "attachments": {"filestore": "/mnt/odoo-filestore/odoo"},
}

EVIDENCE = {
    "postgres.primary.reachable": False,
    "rpo.exposure_s": 42.0,
    "promote.option": "Forced",
    "promote.reason": "the primary does not answer",
    "damage.suspected_since": "2026-12-04T09:00:00Z",
    "security.compromised_since": "2026-12-04T08:00:00Z",
    "dependency.kind": "redis",
    "dependency.name": "redis-odoo-weu",
    "ingress.degraded": True,
    "ingress.endpoint": "odoo-weu",
    "earlier": None,
}


def config(**changes):
    value = copy.deepcopy(CONFIG)
    value.update(changes)
    return value


def evidence(**changes):
    value = dict(EVIDENCE)
    for key, item in changes.items():
        value[key.replace("__", ".")] = item
    return value


def runbook(steps, gates=None, path="failed-release"):
    """A runbook document around the given steps (the catalogue's rules still apply)."""
    return {
        "path": path,
        "version": 1,
        "title": "test runbook",
        "summary": "a runbook written for a test",
        "gates": gates
        if gates is not None
        else {"recovery": {"approvers": ["DR.Approver"], "explain": "approve the test"}},
        "steps": steps,
    }


def hold(step_id, **extra):
    """A reversible step (jobs.hold, undone by jobs.release)."""
    return {
        "id": step_id,
        "title": f"hold jobs ({step_id})",
        "action": "jobs.hold",
        "inputs": {"server": "srv", "database": "odoo"},
        "compensation": {"action": "jobs.release", "inputs": {"server": "srv", "database": "odoo"}},
        **extra,
    }


def check(step_id, **extra):
    """A read-only step (validate.technical)."""
    return {
        "id": step_id,
        "title": f"check ({step_id})",
        "action": "validate.technical",
        "inputs": {"server": "srv"},
        **extra,
    }


def gate(step_id="approve", name="recovery", **extra):
    return {"id": step_id, "title": f"gate {name}", "gate": name, **extra}
