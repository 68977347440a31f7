"""Release activity: roll Odoo's deployments back to the last good release and wait for the
rollout. A release is a ReplicaSet revision of the deployment: its images and configuration."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from typing import Any

import azure.durable_functions as df

from activities.compute import KubeClient
from activities.database import ActivityError, audit, step_log
from shared.recovery import (
    DeploymentRollback,
    ReleaseRecord,
    ReleaseRollbackRequest,
    ReleaseRollbackResult,
    choose_rollback,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()

REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH_LABEL = "pod-template-hash"


def rollback(req: ReleaseRollbackRequest) -> ReleaseRollbackResult:
    """Roll ``req.deployment`` (and ``req.deployments``) back; rolling back to the release that
    already runs is a no-op."""
    started = time.monotonic()
    kube = KubeClient(req.cluster)
    names = [req.deployment, *[d for d in req.deployments if d != req.deployment]]
    done = []
    for name in names:
        done.append(_rollback_one(kube, req, name))
    deadline = started + req.timeout_s
    for item in done:
        dep = kube.wait_rollout(
            req.namespace, item.deployment, max(1.0, deadline - time.monotonic())
        )
        item.ready = True
        running = _images(dep["spec"]["template"])
        if running != item.images:
            raise ActivityError(
                f"{item.deployment} runs {running} after the rollback, not {item.images}"
            )
    detail = "; ".join(
        f"{d.deployment} already at revision {d.to_revision}"
        if d.already_current
        else f"{d.deployment} rolled back from revision {d.from_revision} to {d.to_revision}"
        for d in done
    )
    audit(req.incident_id, req.step_id, "release_rollback", detail)
    return ReleaseRollbackResult(
        cluster=req.cluster,
        rollbacks=done,
        rollout_s=round(time.monotonic() - started, 3),
        detail=detail,
    )


MARK = "odoo-finance-dr/rollback"


def _rollback_one(kube: KubeClient, req: ReleaseRollbackRequest, name: str) -> DeploymentRollback:
    """Roll one deployment back, once per incident step.

    Kubernetes numbers the release restored by a rollback as a new revision, so "the newest
    release before the current one" would, asked twice, undo the rollback. The deployment
    therefore carries an annotation naming the step that rolled it back and the revisions and
    images involved; the same step asking again finds it and does nothing.
    """
    slog = step_log(log, req)
    dep = kube.deployment(req.namespace, name)
    annotations = dep["metadata"].get("annotations") or {}
    marker = f"{req.incident_id}/{req.step_id}"
    recorded = json.loads(annotations.get(MARK) or "{}")
    if recorded.get("by") == marker:
        return DeploymentRollback(
            deployment=name,
            from_revision=recorded["from"],
            to_revision=recorded["to"],
            images=recorded["images"],
            already_current=True,
            ready=False,
        )

    current_revision = int(annotations.get(REVISION, 0))
    sets = kube.replicasets(req.namespace, name)
    history = [_record(rs, current_revision) for rs in sets]
    try:
        current, target, reason = choose_rollback(history, req.revision)
    except ValueError as exc:
        raise ActivityError(f"{name}: {exc}") from exc
    already = target.revision == current.revision
    if not already:
        template = next(rs for rs in sets if _revision(rs) == target.revision)["spec"]["template"]
        slog.info("rolling %s back to revision %s: %s", name, target.revision, reason)
        mark = {"by": marker, "from": current.revision, "to": target.revision}
        mark["images"] = target.images
        _apply_template(kube, req.namespace, name, template, {MARK: json.dumps(mark)})
    return DeploymentRollback(
        deployment=name,
        from_revision=current.revision,
        to_revision=target.revision,
        images=target.images,
        already_current=already,
        ready=False,
    )


def _apply_template(
    kube: KubeClient, namespace: str, name: str, template: dict, annotations: dict[str, str]
) -> None:
    """Put the release's pod template back.

    A ReplicaSet that records the whole template (as Kubernetes does) replaces the template
    (merge patch: the container list is replaced, as ``rollout undo`` does). One that records
    only names and images is merged by container name, keeping today's configuration.
    """
    clean = copy.deepcopy(template)
    (clean.get("metadata") or {}).get("labels", {}).pop(TEMPLATE_HASH_LABEL, None)
    containers = (clean.get("spec") or {}).get("containers") or []
    full = any(set(c) - {"name", "image"} for c in containers)
    if not full:
        # Limitation: with only images recorded, configuration the bad release changed stays.
        log.info("the release of %s records images only; its configuration is kept", name)
    kube.request(
        "PATCH",
        kube.deployment_path(namespace, name),
        {"metadata": {"annotations": annotations}, "spec": {"template": clean}},
        "application/merge-patch+json" if full else "application/strategic-merge-patch+json",
    )


def _revision(rs: dict[str, Any]) -> int:
    return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))


def _images(template: dict[str, Any]) -> dict[str, str]:
    containers = (template.get("spec") or {}).get("containers") or []
    return {c.get("name", ""): c.get("image", "") for c in containers}


def _config_hash(template: dict[str, Any]) -> str:
    """A hash of the template without images and without Kubernetes' own hash label."""
    stripped = copy.deepcopy(template)
    (stripped.get("metadata") or {}).get("labels", {}).pop(TEMPLATE_HASH_LABEL, None)
    for container in (stripped.get("spec") or {}).get("containers") or []:
        container.pop("image", None)
    text = json.dumps(stripped.get("spec") or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record(rs: dict[str, Any], current_revision: int) -> ReleaseRecord:
    template = (rs.get("spec") or {}).get("template") or {}
    revision = _revision(rs)
    return ReleaseRecord(
        revision=revision,
        images=_images(template),
        config_hash=_config_hash(template),
        current=revision == current_revision,
    )


@bp.activity_trigger(input_name="payload", activity="release_rollback")
def release_rollback(payload: dict) -> dict:
    return rollback(ReleaseRollbackRequest.model_validate(payload)).model_dump(mode="json")
