"""Odoo's document numbers: how a move name splits into sequence prefix and number.

Odoo stores ``sequence_prefix`` and ``sequence_number`` on every move, split from ``name`` with
its "fixed" pattern: a lazy prefix, then a run of at most nine digits, then trailing
non-digits. The split is done with Python's ``re`` on purpose: PostgreSQL's regex engine gives
the whole pattern the greediness of its first quantifier, which moves the split.
"""

from __future__ import annotations

import re

_FIXED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d{0,9})(?P<suffix>\D*?)$")


def split_name(name: str | None) -> tuple[str, int]:
    """``INV/2025/00001`` -> (``INV/2025/``, 1); ``/`` -> ("", 0); None -> ("", 0)."""
    if name is None:
        return "", 0
    match = _FIXED.match(name)
    if match is None:  # a name with a newline in it; Odoo's pattern would not match either
        return name, 0
    digits = match.group("number")
    return match.group("prefix"), int(digits) if digits else 0


def yearly_prefix(code: str, year: int, refund: bool = False, payment: bool = False) -> str:
    """Prefix of a yearly-reset sequence: sale, bank and cash journals (``INV/2025/``)."""
    lead = "R" if refund else "P" if payment else ""
    return f"{lead}{code}/{year}/"


def monthly_prefix(code: str, year: int, month: int, refund: bool = False) -> str:
    """Prefix of a monthly-reset sequence: purchase and general journals (``BILL/2025/01/``)."""
    lead = "R" if refund else ""
    return f"{lead}{code}/{year}/{month:02d}/"


def format_number(prefix: str, number: int, monthly: bool) -> str:
    """The name Odoo issues: five digits for yearly sequences, four for monthly ones."""
    return f"{prefix}{number:0{4 if monthly else 5}d}"
