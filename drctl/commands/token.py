"""Mint a bearer token from devhost's local issuer: python -m drctl token --user NAME --roles R."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drctl.cli import CommandError, emit_json
from shared.models import APP_ROLES, Role


def add_arguments(parser) -> None:
    parser.add_argument("--user", required=True, help="user name (preferred_username)")
    parser.add_argument(
        "--roles", default="", help=f"comma-separated roles, e.g. {Role.APPROVER.value}"
    )
    parser.add_argument("--state-dir", help="devhost state folder (DR_STATE_DIR, else .devhost)")
    parser.add_argument("--ttl", type=float, default=3600, help="seconds the token is valid")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from devhost.issuer import AUDIENCE, ISSUER, LocalIssuer

    user = args.user.strip()
    if not user:
        raise CommandError("--user must name someone")
    if not 0 < args.ttl <= 7 * 86400:
        raise CommandError("--ttl must be between 1 second and 7 days")
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = [r for r in roles if r not in APP_ROLES]
    if unknown:
        raise CommandError(
            f"unknown role(s) {', '.join(unknown)}; known: {', '.join(sorted(APP_ROLES))}"
        )
    state_dir = Path(args.state_dir or os.environ.get("DR_STATE_DIR") or ".devhost")
    try:
        issuer = LocalIssuer(state_dir)
        token = issuer.mint(user, roles, args.ttl)
    except OSError as exc:
        raise CommandError(f"cannot use the issuer key in {state_dir}: {exc}") from exc
    if args.json:
        expires = datetime.now(UTC) + timedelta(seconds=args.ttl)
        emit_json(
            {
                "token": token,
                "user": user,
                "subject": issuer.subject_of(user),
                "roles": roles,
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "expires_at": expires.isoformat(),
            }
        )
    else:
        print(token)
    return 0
