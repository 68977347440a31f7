"""Typed request and report of the finance validation (check ids and shape are a contract)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

CheckStatus = Literal["pass", "warn", "fail", "skip"]

CHECK_IDS = (
    "ledger.unbalanced_moves",
    "ledger.trial_balance",
    "ledger.orphan_lines",
    "sequence.duplicates",
    "sequence.gaps",
    "hash_chain.broken",
    "attachments.missing",
    "attachments.checksum",
    "recovery_point.after",
    "reconcile.inconsistent",
    "cron.active",
    "queue.requeued",
)


class ValidationRequest(BaseModel):
    """What to validate. The DSN is a secret (it may carry a password): it never appears in
    logs or in the report, which names only the database."""

    # A SecretStr dumps as '**********': build the request where the secret is resolved (the
    # activity, after reading Key Vault), not upstream of a JSON hop.
    dsn: SecretStr
    filestore: Path | None = Field(None, description="the database's own filestore folder")
    blob_container_url: str | None = Field(
        None, description="Blob container holding the attachments (store_fname as blob name)"
    )
    blob_connection_string: SecretStr | None = Field(
        None, description="storage connection string when the URL carries no SAS"
    )
    recovery_point: datetime | None = None
    expect_jobs_held: bool = False
    companies: list[int] | None = Field(None, description="only these company ids")
    # PostgreSQL takes a statement timeout of at most 2^31-1 ms (24.8 days).
    statement_timeout_s: float = Field(600.0, gt=0, le=2_147_483, allow_inf_nan=False)
    connect_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    max_workers: int = Field(4, ge=1, le=16)
    sample_limit: int = Field(20, ge=1, le=1000)

    @field_validator("filestore", "blob_container_url")
    @classmethod
    def _not_blank(cls, value):
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be blank")
        return value


class CheckResult(BaseModel):
    """One check: status, how many findings, samples a controller can look up, why."""

    id: str
    status: CheckStatus
    count: int = 0
    samples: list[dict[str, Any]] = Field(default_factory=list)
    detail: str = ""
    duration_s: float = 0.0


class Summary(BaseModel):
    """Checks per status; ``pass`` is a keyword in Python, hence the alias."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    pass_: int = Field(0, alias="pass")
    warn: int = 0
    fail: int = 0
    skip: int = 0


class ValidationReport(BaseModel):
    """The report of one validation run."""

    database: str
    odoo_version: str
    started_at: datetime
    duration_s: float
    summary: Summary
    checks: list[CheckResult]

    @property
    def failed(self) -> bool:
        return self.summary.fail > 0

    def check(self, check_id: str) -> CheckResult:
        for result in self.checks:
            if result.id == check_id:
                return result
        raise KeyError(check_id)

    def to_json_dict(self) -> dict[str, Any]:
        """The contract's JSON shape (``summary.pass`` spelled as such)."""
        return self.model_dump(mode="json", by_alias=True)
