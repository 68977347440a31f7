"""The remaining catalogue actions: take an ingress endpoint out of rotation within its region,
isolate an environment and lift the isolation, rotate secrets by name, and the dependency
actions (switch the attachment store, pause or resume an integration, probe a dependency).

The runbooks name these by what a person knows (an environment, a secret's name, an
integration's name); the activities here find the resources in the environment's configuration
(``shared.config``) and, where an activity of another module does the work, call its plain
function with the request it takes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import azure.durable_functions as df
import redis
import requests
from azure.core.exceptions import AzureError, ResourceNotFoundError

from activities.cache import redis_client
from activities.compute import KubeClient
from activities.database import ARM_TIMEOUTS, ActivityError, audit, azure_error, step_log
from activities.dependencies import queues_pause, queues_resume, storage_switch
from activities.isolation import LOCKS_API, lock, rotate_secrets
from shared import azure_clients
from shared.config import ConfigError, Environment, cached_config
from shared.recovery import (
    CacheFlushRequest,
    DbServer,
    LockRecord,
    LockRequest,
    LockResult,
    QueuesRequest,
    RotateSecret,
    RotateSecretsRequest,
    SecretRef,
    StorageSwitchRequest,
    parse_resource_id,
)
from shared.recovery_extra import (
    DependencyCheckRequest,
    DependencyCheckResult,
    DependencyProbe,
    IntegrationRequest,
    IntegrationResult,
    IsolationRequest,
    RerouteRequest,
    RerouteResult,
    SecretsRotateRequest,
    SecretsRotateResult,
    StorageFailoverRequest,
    StorageFailoverResult,
    UnlockResult,
    environment_name,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

HTTP_TIMEOUT_S = 5


def incident_environment(incident_id: str) -> tuple[str, Environment]:
    """The configured environment an incident belongs to; ActivityError when there is none."""
    try:
        config = cached_config()
        name = environment_name(incident_id, list(config.environments))
    except (ConfigError, ValueError) as exc:
        raise ActivityError(f"no environment for incident {incident_id!r}: {exc}") from exc
    return name, config.environments[name]


def _name_of(value: str) -> str:
    """The resource name of an ARM id, or the value itself when it is a bare name."""
    return value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value


def _region(value: Any) -> str | None:
    return str(value).replace(" ", "").lower() if value else None


# --------------------------------------------------------------------------------------------
# traffic_reroute


def reroute(req: RerouteRequest) -> RerouteResult:
    """Disable the endpoint when another enabled endpoint of the profile serves the same region.

    With no such peer, disabling it would send clients to another region: that is a cutover,
    which the paths that reroute do not make, so the endpoint is left in rotation and the
    result says why (the step succeeds; the restart and checks that follow still run).
    """
    slog = step_log(log, req)
    rid = parse_resource_id(req.profile)
    client = azure_clients.trafficmanager_client(rid.subscription)
    try:
        profile = client.profiles.get(rid.resource_group, rid.name, **ARM_TIMEOUTS)
        endpoints = list(profile.properties.endpoints or [])
        target = _pick_endpoint(endpoints, req.endpoint, rid.name)
        region = _region(target.properties.endpoint_location)
        status = _s(target.properties.endpoint_status)
        peers = [
            e
            for e in endpoints
            if e.name != target.name
            and region is not None
            and _region(e.properties.endpoint_location) == region
            and _s(e.properties.endpoint_status) == "Enabled"
        ]
        remaining = [e.name for e in peers]
        if status == "Disabled":
            result = RerouteResult(
                profile=req.profile,
                endpoint=target.name,
                region=region,
                rerouted=True,
                already_out=True,
                remaining=remaining,
                detail=f"endpoint {target.name} is already out of rotation",
            )
        elif not peers:
            result = RerouteResult(
                profile=req.profile,
                endpoint=target.name,
                region=region,
                rerouted=False,
                already_out=False,
                remaining=[],
                detail=(
                    f"endpoint {target.name} was left in rotation: no other enabled endpoint "
                    f"serves {region or 'its region'}, so taking it out would move clients to "
                    "another region, which is a cutover and not a reroute"
                ),
            )
        else:
            slog.info("taking endpoint %s of %s out of rotation", target.name, rid.name)
            client.endpoints.update(
                rid.resource_group,
                rid.name,
                _endpoint_type(target),
                target.name,
                {"properties": {"endpointStatus": "Disabled"}},
                **ARM_TIMEOUTS,
            )
            peer_states = ", ".join(
                f"{e.name} ({_s(e.properties.endpoint_monitor_status) or 'unknown'})" for e in peers
            )
            result = RerouteResult(
                profile=req.profile,
                endpoint=target.name,
                region=region,
                rerouted=True,
                already_out=False,
                remaining=remaining,
                detail=f"endpoint {target.name} taken out of rotation; {region} is served by "
                f"{peer_states}",
            )
    except AzureError as exc:
        raise ActivityError(f"rerouting on profile {rid.name} failed: {azure_error(exc)}") from exc
    finally:
        client.close()
    audit(req.incident_id, req.step_id, "traffic_reroute", result.detail, endpoint=target.name)
    return result


def _pick_endpoint(endpoints: list[Any], wanted: str, profile: str) -> Any:
    """The endpoint by name; ``primary``/``secondary`` mean the first/second by priority."""
    by_name = {e.name.lower(): e for e in endpoints}
    if wanted.lower() in by_name:
        return by_name[wanted.lower()]
    ordered = sorted(endpoints, key=lambda e: e.properties.priority or 1001)
    roles = {"primary": 0, "secondary": 1}
    if wanted.lower() in roles and len(ordered) > roles[wanted.lower()]:
        return ordered[roles[wanted.lower()]]
    known = ", ".join(e.name for e in endpoints) or "none"
    raise ActivityError(f"profile {profile} has no endpoint {wanted!r} (endpoints: {known})")


def _endpoint_type(endpoint: Any) -> str:
    tail = str(getattr(endpoint, "type", "") or "").rsplit("/", 1)[-1].lower()
    known = {"azureendpoints": "AzureEndpoints", "nestedendpoints": "NestedEndpoints"}
    return known.get(tail, "ExternalEndpoints")


def _s(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


# --------------------------------------------------------------------------------------------
# isolation_lock_environment, isolation_unlock


def lock_name(incident_id: str) -> str:
    """The name of the management lock an incident's isolation places (one per incident)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"dr-{incident_id}")[:90]


def isolation_resources(req: IsolationRequest) -> list[str]:
    """The environment's resources (servers, clusters, profile, vault, storage, cache)."""
    if req.resources:
        return list(req.resources)
    _, env = incident_environment(req.incident_id)
    found = [
        rid
        for component, rid, _ in env.components()
        if not component.startswith("traffic-manager-")
    ]
    return list(dict.fromkeys(found))


def lock_environment(req: IsolationRequest) -> LockResult:
    """isolation.lock by environment: a CanNotDelete lock on each of its resources."""
    # Limitation: isolating means locks here; disabling public endpoints and identities is
    # the separate isolation_disable_endpoints and secrets.rotate steps, not part of this one.
    name = req.lock_name or lock_name(req.incident_id)
    return lock(
        LockRequest(
            incident_id=req.incident_id,
            step_id=req.step_id,
            resources=isolation_resources(req),
            lock_name=name,
            notes=f"isolation ({req.scope}) of {req.environment} for incident {req.incident_id}",
        )
    )


def unlock(req: IsolationRequest) -> UnlockResult:
    """Remove the lock that isolation placed from each resource; one already gone is fine.
    Other locks (placed by people or policy) are left alone: only this incident's name goes."""
    slog = step_log(log, req)
    name = req.lock_name or lock_name(req.incident_id)
    removed: list[LockRecord] = []
    gone: list[str] = []
    with azure_clients.ArmClient() as arm:
        for resource in isolation_resources(req):
            path = f"{resource}/providers/Microsoft.Authorization/locks/{name}"
            try:
                _, body = arm.request("GET", path, api_version=LOCKS_API)
            except (ResourceNotFoundError, AzureError) as exc:
                if isinstance(exc, ResourceNotFoundError) or _status(exc) == 404:
                    gone.append(resource)
                    continue
                raise ActivityError(
                    f"reading lock {name} on {resource}: {azure_error(exc)}"
                ) from exc
            try:
                arm.request("DELETE", path, api_version=LOCKS_API)
            except AzureError as exc:
                if _status(exc) != 404:
                    raise ActivityError(
                        f"removing lock {name} from {resource} failed: {azure_error(exc)}"
                    ) from exc
            level = ((body or {}).get("properties") or {}).get("level", "CanNotDelete")
            removed.append(LockRecord(resource=resource, lock_id=path, level=level, created=False))
            slog.info("removed lock %s from %s", name, resource)
    detail = f"removed lock {name} from {len(removed)} resources" + (
        f"; {len(gone)} had none" if gone else ""
    )
    audit(req.incident_id, req.step_id, "isolation_unlock", detail, lock=name)
    return UnlockResult(removed=removed, already_gone=gone, lock_name=name, detail=detail)


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status_code", None)


# --------------------------------------------------------------------------------------------
# secrets_rotate


def vault_url_of(vault: str) -> str:
    """A vault's URL from its URL, ARM id or name (``DR_KEYVAULT_URLS`` maps local vaults)."""
    if vault.startswith("https://"):
        return vault
    name = _name_of(vault)
    configured = os.environ.get("DR_KEYVAULT_URLS")
    if configured:
        try:
            urls = {k.lower(): v for k, v in json.loads(configured).items()}
        except (ValueError, AttributeError) as exc:
            raise ActivityError(f"DR_KEYVAULT_URLS is not a JSON object: {exc}") from exc
        if name.lower() in urls:
            return urls[name.lower()]
    return f"https://{name}.vault.azure.net/"


def rotate_by_name(req: SecretsRotateRequest) -> SecretsRotateResult:
    """New values for the named secrets; the application's password also becomes its role's
    password on every server of the environment (primary, replica, the isolated restore)."""
    # Limitation: a restore made after the rotation starts from a backup that holds the old
    # password; the restore server gets the new one only when it exists at rotation time.
    url = vault_url_of(req.vault)
    try:
        _, env = incident_environment(req.incident_id)
    except ActivityError as exc:
        log.info("rotating without database roles: %s", exc)
        env = None
    items = [
        RotateSecret(
            secret=SecretRef(name=name, vault_url=url),
            db_role=env.recovery.app_role
            if env and name == env.recovery.app_password_secret
            else None,
            servers=_servers(env) if env and name == env.recovery.app_password_secret else [],
        )
        for name in req.names
    ]
    done = rotate_secrets(
        RotateSecretsRequest(
            incident_id=req.incident_id,
            step_id=req.step_id,
            secrets=items,
            connect_timeout_s=req.connect_timeout_s,
        )
    )
    return SecretsRotateResult(rotated=done.rotated, detail=done.detail, vault_url=url)


def _servers(env: Environment) -> list[DbServer]:
    sub, rg = env.subscription_id, env.resource_group
    restore = (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL"
        f"/flexibleServers/{env.recovery.restore_server}"
    )
    secret = env.recovery.admin_password_secret
    return [
        DbServer(
            server_id=rid,
            admin_password_secret=SecretRef(name=secret) if secret else None,
        )
        for rid in (env.postgres.primary.resource_id, env.postgres.replica.resource_id, restore)
    ]


# --------------------------------------------------------------------------------------------
# dependency_storage_failover, dependency_storage_failback


def _attachment_account(env: Environment | None, requested: str, region: str | None) -> str:
    """The attachment account to use: the environment's one in ``region``, else the named."""
    if env is not None and region is not None:
        accounts = [a for a in env.storage_accounts if a.purpose in (None, "attachments")]
        for account in accounts:
            if _region(account.region) == _region(region):
                return account.name
    if region is None or env is None:
        return _name_of(requested)
    raise ActivityError(f"environment has no attachment storage account in {region}")


def storage_failover(req: StorageFailoverRequest, *, back: bool = False) -> StorageFailoverResult:
    """Point the attachment store at the secondary region's account (``back``: the primary's)."""
    try:
        _, env = incident_environment(req.incident_id)
    except ActivityError:
        if back:
            raise
        env = None
    region = None
    if env is not None:
        region = env.primary_region if back else env.secondary_region
    account = _attachment_account(env, req.account, region)
    url = req.account_url or f"https://{account}.blob.core.windows.net/"
    # Limitation: local Azure has no storage accounts, so the default blob URL does not answer
    # there; give account_url (Azurite's) or check false to switch locally.
    switched = storage_switch(
        StorageSwitchRequest(
            incident_id=req.incident_id,
            step_id=req.step_id,
            setting=SecretRef(name=req.setting),
            account_url=url,
            check=req.check,
            timeout_s=req.timeout_s,
        )
    )
    return StorageFailoverResult(**switched.model_dump(), account=account)


# --------------------------------------------------------------------------------------------
# dependency_pause_integration, dependency_resume_integration


def integration_workers(env: Environment, integration: str) -> tuple[dict[str, int], str]:
    """The worker deployments of an integration, and why those: the deployment of that name,
    else those whose name holds one of the integration's words, else all integration workers."""
    deployments = list(env.recovery.integration_deployments)
    if not deployments:
        raise ActivityError("the environment configures no integration deployments")
    wanted = integration.lower()
    if wanted in deployments:
        return {wanted: 1}, f"{wanted} is an integration deployment"
    words = [w for w in re.split(r"[^a-z0-9]+", wanted) if len(w) > 2 and w != "odoo"]
    chosen = [d for d in deployments if any(w in d.lower() for w in words)]
    if chosen:
        return {d: 1 for d in chosen}, f"{', '.join(chosen)} carry {integration!r}'s name"
    return {d: 1 for d in deployments}, (
        f"no integration deployment is named after {integration!r}, so all of them"
    )


def integration(req: IntegrationRequest, *, resume: bool) -> IntegrationResult:
    """Scale the integration's workers to zero (pause) or back to what they had (resume)."""
    _, env = incident_environment(req.incident_id)
    workers, why = integration_workers(env, req.integration)
    queues = QueuesRequest(
        incident_id=req.incident_id,
        step_id=req.step_id,
        cluster=env.aks.primary.resource_id,
        namespace=env.aks.namespace,
        workers=workers,
        timeout_s=req.timeout_s,
    )
    done = queues_resume(queues) if resume else queues_pause(queues)
    return IntegrationResult(
        **{**done.model_dump(), "detail": f"{done.detail} ({why})"},
        integration=req.integration,
        cluster=queues.cluster,
    )


# --------------------------------------------------------------------------------------------
# dependency_check


KIND_WORDS = {
    "redis": ("redis", "cache"),
    "storage": ("storage", "blob", "attachment"),
    "integration": ("bank", "tax", "integration", "sync", "queue"),
    "identity": ("identity", "entra", "aad", "login"),
    "dns": ("dns",),
}


def dependency_kind(env: Environment | None, name: str) -> tuple[str, str]:
    """The kind of a dependency and why: the environment's resource of that name, else a word."""
    wanted = _name_of(name).lower()
    if env is not None:
        if env.redis is not None and wanted == env.redis.name.lower():
            return "redis", f"{name} is the environment's Redis cache"
        for account in env.storage_accounts:
            if wanted == account.name.lower():
                return "storage", f"{name} is one of the environment's storage accounts"
        if wanted in env.recovery.integration_deployments:
            return "integration", f"{name} is one of the environment's integration workers"
    for kind, words in KIND_WORDS.items():
        hit = next((w for w in words if w in wanted), None)
        if hit:
            return kind, f"the name {name!r} says {hit}"
    return "other", f"nothing says what kind of dependency {name!r} is"


def check_dependency(req: DependencyCheckRequest) -> DependencyCheckResult:
    """Probe the dependency and report what is wrong; read-only, never fails for bad health."""
    try:
        _, env = incident_environment(req.incident_id)
    except ActivityError:
        env = None
    if req.kind is not None:
        kind, kind_reason = req.kind, "the request says so"
    else:
        kind, kind_reason = dependency_kind(env, req.dependency)
    probes: list[DependencyProbe] = []
    if kind == "redis":
        probes.append(_probe_redis(req))
    elif kind == "storage":
        probes += _probe_storage(env, req)
    elif kind == "integration" and env is not None:
        workers, _ = integration_workers(env, req.dependency)
        probes += _probe_workers(env, workers)
    healthy = all(p.ok for p in probes) if probes else None
    if healthy is None:
        detail = f"{req.dependency} ({kind}): no probe reaches this kind of dependency"
    else:
        bad = [p.detail for p in probes if not p.ok]
        detail = f"{req.dependency} ({kind}): " + ("; ".join(bad) if bad else "healthy")
    audit(req.incident_id, req.step_id, "dependency_check", detail, kind=kind)
    return DependencyCheckResult(
        dependency=req.dependency,
        kind=kind,
        kind_reason=kind_reason,
        healthy=healthy,
        probes=probes,
        detail=detail,
    )


def _probe_redis(req: DependencyCheckRequest) -> DependencyProbe:
    try:
        client = redis_client(
            CacheFlushRequest(
                incident_id=req.incident_id, step_id=req.step_id, timeout_s=req.timeout_s
            )
        )
    except ActivityError as exc:
        return DependencyProbe(target="redis", ok=False, detail=str(exc))
    try:
        client.ping()
        used = client.info("memory").get("used_memory_human")
        return DependencyProbe(target="redis", ok=True, detail=f"Redis answers PING ({used} used)")
    except redis.RedisError as exc:
        return DependencyProbe(target="redis", ok=False, detail=f"Redis does not answer: {exc}")
    finally:
        client.close()


def _probe_storage(env: Environment | None, req: DependencyCheckRequest) -> list[DependencyProbe]:
    # Limitation: the probe asks each account's public blob endpoint; local Azure has no
    # storage accounts, so there the probe reports them unreachable.
    names = [a.name for a in env.storage_accounts] if env else [_name_of(req.dependency)]
    probes = []
    for name in names:
        url = f"https://{name}.blob.core.windows.net/"
        try:
            # Any HTTP answer counts: an account answers an anonymous GET with 400 or 403.
            resp = requests.get(
                url,
                timeout=(req.timeout_s, req.timeout_s),
                verify=os.environ.get("DR_CA_BUNDLE") or True,
            )
            probes.append(
                DependencyProbe(
                    target=url, ok=True, detail=f"{name} answers (HTTP {resp.status_code})"
                )
            )
        except requests.RequestException as exc:
            probes.append(
                DependencyProbe(target=url, ok=False, detail=f"{name} does not answer: {exc}")
            )
    return probes


def _probe_workers(env: Environment, workers: dict[str, int]) -> list[DependencyProbe]:
    kube = KubeClient(env.aks.primary.resource_id)
    probes = []
    for name in workers:
        try:
            dep = kube.deployment(env.aks.namespace, name)
        except ActivityError as exc:
            probes.append(DependencyProbe(target=name, ok=False, detail=str(exc)))
            continue
        want = int((dep.get("spec") or {}).get("replicas", 1))
        ready = int((dep.get("status") or {}).get("readyReplicas", 0))
        ok = want > 0 and ready >= want
        detail = (
            f"{name} runs {ready} of {want} replicas"
            if want
            else f"{name} is scaled to zero (paused)"
        )
        probes.append(DependencyProbe(target=name, ok=ok, detail=detail))
    return probes


# --------------------------------------------------------------------------------------------
# Function bindings


@bp.activity_trigger(input_name="payload", activity="traffic_reroute")
def traffic_reroute(payload: dict) -> dict:
    return reroute(RerouteRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="isolation_lock_environment")
def isolation_lock_environment(payload: dict) -> dict:
    return lock_environment(IsolationRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="isolation_unlock")
def isolation_unlock(payload: dict) -> dict:
    return unlock(IsolationRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="secrets_rotate")
def secrets_rotate(payload: dict) -> dict:
    return rotate_by_name(SecretsRotateRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_storage_failover")
def dependency_storage_failover(payload: dict) -> dict:
    req = StorageFailoverRequest.model_validate(payload)
    return storage_failover(req).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_storage_failback")
def dependency_storage_failback(payload: dict) -> dict:
    req = StorageFailoverRequest.model_validate(payload)
    return storage_failover(req, back=True).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_pause_integration")
def dependency_pause_integration(payload: dict) -> dict:
    req = IntegrationRequest.model_validate(payload)
    return integration(req, resume=False).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_resume_integration")
def dependency_resume_integration(payload: dict) -> dict:
    req = IntegrationRequest.model_validate(payload)
    return integration(req, resume=True).model_dump(mode="json")


@bp.activity_trigger(input_name="payload", activity="dependency_check")
def dependency_check(payload: dict) -> dict:
    return check_dependency(DependencyCheckRequest.model_validate(payload)).model_dump(mode="json")
