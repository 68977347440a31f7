"""Generator of Odoo-shaped finance databases (16, 17, 18), bulk-loaded with COPY.

The data reads like a small group's books: several companies in different currencies (one
with zero decimals), sale, purchase, bank and general journals with yearly and monthly number
resets, invoices, bills, refunds, payments, misc entries, partial and full reconciliations,
invoice PDFs in the filestore layout, hash chains by the version's rules on restricted
journals, scheduled jobs and, when asked, queue jobs. The same seed always gives the same data.

Moves are generated in date order, company by company, so every sequence is numbered and every
hash chain is built as Odoo would have posted them; a payment is decided when its invoice is
generated (and emitted on its own date), so an invoice row is written once, already final.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import conninfo, sql
from pydantic import BaseModel, Field

from shared.finance import hashchain, schema
from shared.finance.numbering import format_number, monthly_prefix, split_name, yearly_prefix

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
N = "\\N"  # NULL in COPY text format

# name, symbol, rounding, decimals, units per EUR
CURRENCIES = [
    ("EUR", "€", "0.01", 2, 1.0),
    ("JPY", "¥", "1", 0, 160.0),
    ("USD", "$", "0.01", 2, 1.1),
    ("CLP", "$", "1", 0, 1000.0),
    ("GBP", "£", "0.01", 2, 0.85),
    ("CHF", "CHF", "0.01", 2, 0.95),
]
COMPANY_NAMES = [
    "Contoso Finance SA",
    "Kumo Trading KK",
    "Fabrikam Inc.",
    "Andes Servicios SpA",
    "Northwind Ltd",
    "Alpine Treuhand AG",
]
PARTNER_NAMES = [
    "Agrolait",
    "Azure Interior",
    "Deco Addict",
    "Gemini Furniture",
    "Lumber Inc",
    "Ready Mat",
    "The Jackson Group",
    "Wood Corner",
    "Brandon Freeman",
    "Café Mürren",
    "Société Générale d'Électricité",
    "Ōsaka Kōgyō",
    "Nordic Logistics",
    "Pacific Paper",
    "Ibérica Transportes",
    "Quantum Tools",
]
PRODUCTS = [
    "Consulting services",
    "Office chairs",
    "Software licence (annual)",
    "Maintenance contract",
    "Freight and handling",
    "Training day",
    "Cloud hosting",
    "Desk lamp",
]
# key: (code, name, account_type, reconcile)
ACCOUNTS = {
    "receivable": ("121000", "Account Receivable", "asset_receivable", True),
    "payable": ("211000", "Account Payable", "liability_payable", True),
    "income": ("400000", "Product Sales", "income", False),
    "expense": ("600000", "Expenses", "expense", False),
    "tax_out": ("251000", "Tax Payable", "liability_current", False),
    "tax_in": ("131000", "Tax Receivable", "asset_current", False),
    "bank": ("101401", "Bank", "asset_cash", False),
    "receipts": ("101402", "Outstanding Receipts", "asset_current", True),
    "payments": ("101403", "Outstanding Payments", "asset_current", True),
    "accrual": ("212000", "Accrued Expenses", "liability_current", False),
    "equity": ("110000", "Capital", "equity", False),
    "depreciation": ("620000", "Depreciation", "expense_depreciation", False),
}
# code, name, type, restricted (hash chain), monthly numbering
JOURNALS = [
    ("INV", "Customer Invoices", "sale", True, False),
    ("BILL", "Vendor Bills", "purchase", True, True),
    ("BNK1", "Bank", "bank", False, False),
    ("MISC", "Miscellaneous Operations", "general", False, True),
]
# Base moves by kind; payments come on top, decided per invoice.
KIND_WEIGHTS = [
    ("out_invoice", 40),
    ("out_refund", 3),
    ("in_invoice", 24),
    ("in_refund", 2),
    ("entry", 10),
]
PAID_SHARE = 0.6
PARTIAL_SHARE = 0.25
TAX_RATE = 0.15
# Expected payments per base move, to aim the total at the requested number of moves.
PAYMENTS_PER_BASE = PAID_SHARE * 64 / 79 * 0.95
ATTACHMENT_LOCATION_DB = "db"
FLUSH_LINES = 200_000


class SeedError(Exception):
    """The generator could not run; the message says why."""


class SeedOptions(BaseModel):
    """What to generate."""

    odoo: Literal[16, 17, 18]
    companies: int = Field(3, ge=1, le=len(COMPANY_NAMES))
    moves: int = Field(1000, ge=1, description="moves to create, payments included (about)")
    seed: int = 1
    filestore: Path | None = Field(None, description="this database's own filestore folder")
    force: bool = False
    queue_jobs: bool = False
    attachments: int = Field(200, ge=0, description="invoice PDFs to attach, at most")
    start_year: int = 2024
    years: int = Field(2, ge=1, le=10)


class SeedResult(BaseModel):
    """What was generated."""

    database: str
    odoo_version: str
    companies: int
    moves: int
    lines: int
    partial_reconciles: int
    full_reconciles: int
    hashed_moves: int
    attachments: int
    cron_jobs: int
    queue_jobs: int
    attachment_location: str
    filestore: str | None
    duration_s: float


def money(minor: int, decimals: int) -> str:
    """Minor units as numeric text: (-12345, 2) -> ``-123.45``."""
    if decimals == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**decimals)
    return f"{sign}{q}.{r:0{decimals}d}"


def _ts(value: datetime | None) -> str:
    return N if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _b(value: bool) -> str:
    return "t" if value else "f"


def _i(value: int | None) -> str:
    return N if value is None else str(value)


def _t(value: str | None) -> str:
    if value is None:
        return N
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _translated(text: str) -> str:
    return json.dumps({"en_US": text}, ensure_ascii=False)


@dataclass
class Currency:
    id: int
    name: str
    decimals: int
    per_eur: float


@dataclass
class Journal:
    id: int
    code: str
    type: str
    restricted: bool
    monthly: bool
    company_id: int
    secure_sequence_id: int | None = None


@dataclass
class Company:
    id: int
    name: str
    currency: Currency
    partner_id: int
    accounts: dict[str, int] = field(default_factory=dict)
    journals: dict[str, Journal] = field(default_factory=dict)


@dataclass
class PlannedPayment:
    """A payment decided when its invoice was generated."""

    when: date
    invoice_move_id: int
    invoice_name: str
    invoice_line_id: int
    partner_id: int
    inbound: bool
    currency: Currency
    amount: int  # company currency minor units, positive
    amount_currency: int  # document currency minor units, positive
    partial_id: int
    full_id: int | None
    company: Company


class Buffers:
    """Rows in COPY text format per table. ``flush`` hands them to a writer thread that COPYs
    them on the connection while generation goes on, so Python builds rows on one core while
    the server parses and stores the previous chunk on the other."""

    def __init__(self, conn: psycopg.Connection, version: int, queue_jobs: bool) -> None:
        self.conn = conn
        self.version = version
        self.queue_jobs = queue_jobs
        self.rows: dict[str, list[str]] = {}
        self.columns: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}
        self._pending: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="seed-copy", daemon=True)
        self._writer.start()

    def declare(self, table: str, cols: list[str]) -> None:
        known = schema.columns(table, self.version)
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise SeedError(f"generator bug: {table} has no column {unknown} in {self.version}")
        self.columns[table] = cols
        self.rows.setdefault(table, [])

    def add(self, table: str, row: str) -> None:
        self.rows[table].append(row)

    def flush(self) -> None:
        """Queue the rows gathered so far for the writer (blocks while two chunks wait)."""
        self._raise_writer_error()
        batch = [(t, list(self.columns[t]), rows) for t, rows in self.rows.items() if rows]
        for table in self.rows:
            self.rows[table] = []
        if batch:
            self._pending.put(batch)

    def finish(self) -> None:
        """Write what is left and wait until every COPY is done."""
        self.flush()
        self.close()
        self._raise_writer_error()

    def close(self) -> None:
        if self._writer.is_alive():
            self._pending.put(None)
            self._writer.join()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise SeedError(f"loading rows failed: {self._error}") from self._error

    def _write_loop(self) -> None:
        while (batch := self._pending.get()) is not None:
            if self._error is not None:
                continue  # drain; the generator sees the error at its next flush
            try:
                self._copy(batch)
            except Exception as exc:  # handed to the generating thread
                self._error = exc

    def _copy(self, batch: list[tuple[str, list[str], list[str]]]) -> None:
        with self.conn.cursor() as cur:
            for table, cols, rows in batch:
                stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols))
                )
                with cur.copy(stmt) as copy:
                    for start in range(0, len(rows), 5000):
                        copy.write("\n".join(rows[start : start + 5000]) + "\n")
                self.counts[table] = self.counts.get(table, 0) + len(rows)


MOVE_COLS = [
    "id", "name", "ref", "state", "move_type", "date", "invoice_date", "invoice_date_due",
    "journal_id", "company_id", "currency_id", "partner_id", "commercial_partner_id",
    "sequence_prefix", "sequence_number", "posted_before", "secure_sequence_number",
    "inalterable_hash", "payment_state", "amount_untaxed", "amount_tax", "amount_total",
    "amount_residual", "amount_untaxed_signed", "amount_tax_signed", "amount_total_signed",
    "amount_residual_signed", "amount_total_in_currency_signed", "auto_post", "is_storno",
    "is_move_sent", "message_main_attachment_id",
    "create_uid", "create_date", "write_uid", "write_date",
]  # fmt: skip
MOVE_EXTRA = {
    16: ["payment_id", "to_check"],
    17: ["payment_id", "to_check", "delivery_date"],
    18: ["origin_payment_id", "checked", "made_sequence_gap", "invoice_currency_rate"],
}
LINE_COLS = [
    "move_id", "move_name", "date", "ref", "parent_state", "journal_id", "company_id",
    "company_currency_id",
    "id", "account_id", "partner_id", "name", "display_type", "sequence", "currency_id",
    "debit", "credit", "balance", "amount_currency", "amount_residual",
    "amount_residual_currency", "reconciled", "full_reconcile_id", "matching_number",
    "payment_id", "tax_base_amount", "quantity", "price_unit", "price_subtotal", "price_total",
    "date_maturity",
    "create_uid", "create_date", "write_uid", "write_date",
]  # fmt: skip
LINE_EXTRA = {16: ["blocked", "tax_audit"], 17: ["invoice_date", "blocked"], 18: ["invoice_date"]}


@dataclass
class Line:
    """One generated line, before it is written."""

    account: int
    partner: int | None
    name: str
    display_type: str
    currency: Currency
    balance: int  # company currency minor units
    amount_currency: int  # line currency minor units
    residual: int = 0
    residual_currency: int = 0
    reconciled: bool = False
    full_id: int | None = None
    matching: str | None = None
    payment_id: int | None = None
    quantity: str = N
    price_unit: str = N
    subtotal: str = N
    total: str = N
    tax_base: str = N
    date_maturity: date | None = None
    id: int = 0


class Generator:
    """Holds the id counters, the random source and the open chains of one generation run."""

    def __init__(self, options: SeedOptions, buffers: Buffers) -> None:
        self.o = options
        self.v = options.odoo
        self.rng = random.Random(options.seed)
        self.buf = buffers
        self.next_id: dict[str, int] = {}
        self.currencies: list[Currency] = []
        self.companies: list[Company] = []
        self.company_by_id: dict[int, Company] = {}
        self.partners: list[int] = []
        self.chain_last: dict[object, str] = {}
        self.secure_next: dict[int, int] = {}
        self.hashed = 0
        self.attachments = 0
        self.payment_heap: list[tuple[date, int, PlannedPayment]] = []
        self.heap_tick = 0
        self.seq_next: dict[tuple[int, str], int] = {}
        self.first_year_end = date(options.start_year, 12, 31)
        self.end_date = date(options.start_year + options.years - 1, 12, 31)
        self.attach_every = 1
        self.base_time = datetime(options.start_year, 1, 1, 8, 0, 0)
        self.lines_written = 0

    def new_id(self, table: str) -> int:
        value = self.next_id.get(table, 1)
        self.next_id[table] = value + 1
        return value

    # ------------------------------------------------------------------ static data

    def static_data(self) -> None:
        self._modules_and_parameters()
        self._currencies()
        self._partners()
        for index in range(self.o.companies):
            self._company(index)
        self._crons()
        if self.o.queue_jobs:
            self._queue_jobs()

    def _modules_and_parameters(self) -> None:
        b = self.buf
        b.declare("ir_module_module", ["id", "name", "state", "latest_version", "author"])
        modules = [("base", "1.3"), ("web", "1.0"), ("mail", "1.15"), ("account", "1.2")]
        if self.v == 18:
            modules[-1] = ("account", "1.3")
        if self.o.queue_jobs:
            modules.append(("queue_job", "1.0.0"))
        for name, minor in modules:
            version = f"{self.v}.0.{minor}"
            author = "Odoo Community Association (OCA)" if name == "queue_job" else "Odoo S.A."
            b.add(
                "ir_module_module",
                f"{self.new_id('mod')}\t{name}\tinstalled\t{version}\t{_t(author)}",
            )
        b.add("ir_module_module", f"{self.new_id('mod')}\tl10n_generic_coa\tuninstalled\t\\N\t\\N")
        b.declare("ir_config_parameter", ["id", "key", "value"])
        db_uuid = uuid.UUID(int=self.rng.getrandbits(128), version=1)
        location = "file" if self.o.filestore else ATTACHMENT_LOCATION_DB
        params = [
            ("database.uuid", str(db_uuid)),
            ("database.secret", uuid.UUID(int=self.rng.getrandbits(128), version=4).hex),
            ("database.create_date", _ts(self.base_time)),
            ("web.base.url", "https://erp.contoso.example"),
            ("ir_attachment.location", location),
        ]
        for key, value in params:
            b.add("ir_config_parameter", f"{self.new_id('icp')}\t{key}\t{value}")

    def _currencies(self) -> None:
        self.buf.declare(
            "res_currency", ["id", "name", "symbol", "rounding", "decimal_places", "active"]
        )
        for name, symbol, rounding, decimals, per_eur in CURRENCIES:
            cid = self.new_id("res_currency")
            self.currencies.append(Currency(cid, name, decimals, per_eur))
            self.buf.add("res_currency", f"{cid}\t{name}\t{symbol}\t{rounding}\t{decimals}\tt")

    def _partners(self) -> None:
        self.buf.declare(
            "res_partner", ["id", "name", "company_id", "commercial_partner_id", "is_company",
                            "active", "email"]
        )  # fmt: skip
        for name in COMPANY_NAMES[: self.o.companies]:
            pid = self.new_id("res_partner")
            self.buf.add("res_partner", f"{pid}\t{_t(name)}\t\\N\t{pid}\tt\tt\t\\N")
        count = len(PARTNER_NAMES) + 4 * self.o.companies
        for index in range(count):
            pid = self.new_id("res_partner")
            base = PARTNER_NAMES[index % len(PARTNER_NAMES)]
            name = base if index < len(PARTNER_NAMES) else f"{base} ({index // len(PARTNER_NAMES)})"
            email = f"billing{pid}@example.com"
            self.buf.add("res_partner", f"{pid}\t{_t(name)}\t\\N\t{pid}\tt\tt\t{email}")
            self.partners.append(pid)

    def _company(self, index: int) -> None:
        cid = self.new_id("res_company")
        currency = self.currencies[index % len(self.currencies)]
        company = Company(cid, COMPANY_NAMES[index], currency, partner_id=cid)
        self.companies.append(company)
        self.company_by_id[cid] = company
        cols = ["id", "name", "partner_id", "currency_id", "parent_id", "sequence",
                "fiscalyear_last_day", "fiscalyear_last_month", "fiscalyear_lock_date",
                "tax_lock_date", "account_storno", "quick_edit_mode"]  # fmt: skip
        if self.v in (17, 18):
            cols.append("parent_path")
        if self.v == 18:
            cols.append("check_account_audit_trail")
        self.buf.declare("res_company", cols)
        row = [str(cid), _t(company.name), str(cid), str(currency.id), N, str(index), "31", "12"]
        row += [N, N, "f", N]
        if self.v in (17, 18):
            row.append(f"{cid}/")
        if self.v == 18:
            row.append("f")
        self.buf.add("res_company", "\t".join(row))
        self._accounts(company)
        self._journals(company)

    def _accounts(self, company: Company) -> None:
        if self.v == 18:
            cols = ["id", "name", "code_store", "account_type", "reconcile", "deprecated",
                    "currency_id", "non_trade"]  # fmt: skip
            self.buf.declare("account_account_res_company_rel", ["account_account_id",
                                                                  "res_company_id"])  # fmt: skip
        else:
            cols = ["id", "name", "code", "company_id", "account_type", "internal_group",
                    "reconcile", "deprecated", "currency_id", "non_trade",
                    "include_initial_balance"]  # fmt: skip
        self.buf.declare("account_account", cols)
        for key, (code, name, account_type, reconcile) in ACCOUNTS.items():
            aid = self.new_id("account_account")
            company.accounts[key] = aid
            group = account_type.split("_")[0]
            if self.v == 18:
                code_store = json.dumps({str(company.id): code})
                row = [str(aid), _translated(name), code_store, account_type, _b(reconcile), "f",
                       N, "f"]  # fmt: skip
                self.buf.add("account_account_res_company_rel", f"{aid}\t{company.id}")
            else:
                label = name if self.v == 16 else _translated(name)
                initial = group in ("asset", "liability", "equity")
                row = [str(aid), label, code, str(company.id), account_type, group,
                       _b(reconcile), "f", N, "f", _b(initial)]  # fmt: skip
            self.buf.add("account_account", "\t".join(row))

    def _journals(self, company: Company) -> None:
        cols = ["id", "name", "code", "type", "company_id", "currency_id", "default_account_id",
                "active", "sequence", "restrict_mode_hash_table", "refund_sequence",
                "payment_sequence"]  # fmt: skip
        if self.v in (16, 17):
            cols.append("secure_sequence_id")
            self.buf.declare(
                "ir_sequence", ["id", "name", "code", "implementation", "active", "prefix",
                                "number_next", "number_increment", "padding", "company_id",
                                "use_date_range"]
            )  # fmt: skip
        self.buf.declare("account_journal", cols)
        defaults = {"sale": "income", "purchase": "expense", "bank": "bank", "general": None}
        for order, (code, name, jtype, restricted, monthly) in enumerate(JOURNALS):
            jid = self.new_id("account_journal")
            journal = Journal(jid, code, jtype, restricted, monthly, company.id)
            company.journals[code] = journal
            default = defaults[jtype]
            label = name if self.v == 16 else _translated(name)
            row = [str(jid), _t(label), code, jtype, str(company.id), N,
                   _i(company.accounts[default]) if default else N, "t", str(order),
                   _b(restricted), _b(jtype in ("sale", "purchase")),
                   _b(jtype == "bank")]  # fmt: skip
            if self.v in (16, 17):
                if restricted:
                    journal.secure_sequence_id = self.new_id("ir_sequence")
                row.append(_i(journal.secure_sequence_id))
            self.buf.add("account_journal", "\t".join(row))

    def write_secure_sequences(self) -> None:
        """16/17: the no-gap counters feeding secure_sequence_number, left at max + 1."""
        if self.v not in (16, 17):
            return
        for company in self.companies:
            for journal in company.journals.values():
                if journal.secure_sequence_id is None:
                    continue
                sid = journal.secure_sequence_id
                nxt = self.secure_next.get(journal.id, 1)
                self.buf.add(
                    "ir_sequence",
                    f"{sid}\t{_t(journal.code + ' Sequence')}\tSECUR{journal.id}-secure_sequence_id"
                    f"\tno_gap\tt\t\\N\t{nxt}\t1\t0\t{company.id}\tf",
                )

    def _crons(self) -> None:
        self.buf.declare("ir_act_server", ["id", "name", "type", "model_name", "state", "code"])
        cols = ["id", "ir_actions_server_id", "cron_name", "user_id", "active", "interval_number",
                "interval_type", "nextcall", "lastcall", "priority"]  # fmt: skip
        cols += ["numbercall", "doall"] if self.v in (16, 17) else ["failure_count"]
        self.buf.declare("ir_cron", cols)
        self.buf.declare("ir_model_data", ["id", "name", "module", "model", "res_id", "noupdate"])
        overdue = datetime.combine(self.end_date + timedelta(days=1), datetime.min.time())
        future = datetime(2099, 1, 1)
        jobs = [
            ("base", "autovacuum_job", "Base: Auto-vacuum internal data", "ir.autovacuum", True,
             1, "days", overdue),
            ("mail", "ir_cron_mail_scheduler_action", "Mail: Email Queue Manager", "mail.mail",
             True, 1, "hours", overdue),
            ("account", "ir_cron_auto_post_draft_entry", "Account: Post draft entries with "
             "auto_post enabled and accounting date up to today", "account.move", True, 1,
             "days", overdue),
            ("account", "ir_cron_account_move_send", "Send invoices automatically",
             "account.move", True, 1, "days", overdue + timedelta(hours=3)),
            ("fetchmail", "ir_cron_mail_gateway_action", "Mail: Fetchmail Service",
             "fetchmail.server", False, 5, "minutes", overdue),
            ("base", "ir_cron_res_users_deletion", "Base: Portal Users Deletion", "res.users",
             True, 1, "days", future),
        ]  # fmt: skip
        for module, xml, name, model, active, number, unit, nextcall in jobs:
            act = self.new_id("ir_act_server")
            self.buf.add(
                "ir_act_server",
                f"{act}\t{_t(_translated(name))}\tir.actions.server\t{model}\tcode\t"
                f"model._cron_run()",
            )
            cron = self.new_id("ir_cron")
            row = [str(cron), str(act), _t(name), "1", _b(active), str(number), unit,
                   _ts(nextcall), _ts(nextcall - timedelta(days=1)), "5"]  # fmt: skip
            row += ["-1", "f"] if self.v in (16, 17) else ["0"]
            self.buf.add("ir_cron", "\t".join(row))
            self.buf.add(
                "ir_model_data",
                f"{self.new_id('ir_model_data')}\t{xml}\t{module}\tir.cron\t{cron}\tt",
            )

    def _queue_jobs(self) -> None:
        cols = ["id", "uuid", "user_id", "company_id", "name", "model_name", "method_name",
                "record_ids", "args", "kwargs", "func_string", "state", "priority", "eta",
                "date_created", "date_enqueued", "date_started", "date_done", "retry",
                "max_retries", "channel"]  # fmt: skip
        self.buf.declare("queue_job", cols)
        last = datetime.combine(self.end_date, datetime.min.time()) + timedelta(hours=20)
        states = ["done"] * 40 + ["pending"] * 3 + ["enqueued"] * 2 + ["started", "failed"]
        for index, state in enumerate(states):
            jid = self.new_id("queue_job")
            created = last - timedelta(minutes=5 * (len(states) - index))
            enq = created + timedelta(seconds=2) if state != "pending" else None
            started = (
                created + timedelta(seconds=3) if state in ("started", "done", "failed") else None
            )
            done = created + timedelta(seconds=9) if state == "done" else None
            job_uuid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
            record = index + 1
            row = [str(jid), str(job_uuid), "2", "1", _t(f"Send invoice {record} to the portal"),
                   "account.move", "_send_to_portal", f"account.move({record},)", "()", "{}",
                   f"account.move({record},)._send_to_portal()", state, "10", N, _ts(created),
                   _ts(enq), _ts(started), _ts(done), "0", "5", "root.edi"]  # fmt: skip
            self.buf.add("queue_job", "\t".join(row))

    # ------------------------------------------------------------------ moves

    def moves(self) -> None:
        base_total = max(1, round(self.o.moves / (1 + PAYMENTS_PER_BASE)))
        per_company = [base_total // self.o.companies] * self.o.companies
        for index in range(base_total % self.o.companies):
            per_company[index] += 1
        invoices_expected = base_total * 40 / 79
        self.attach_every = max(1, round(invoices_expected / max(1, self.o.attachments)))
        self._declare_move_tables()
        days = (self.end_date - date(self.o.start_year, 1, 1)).days + 1
        for company, count in zip(self.companies, per_company, strict=True):
            self._company_moves(company, count, days)

    def _declare_move_tables(self) -> None:
        self.buf.declare("account_move", MOVE_COLS + MOVE_EXTRA[self.v])
        self.buf.declare("account_move_line", LINE_COLS + LINE_EXTRA[self.v])
        self.buf.declare(
            "account_partial_reconcile",
            ["id", "debit_move_id", "credit_move_id", "full_reconcile_id", "debit_currency_id",
             "credit_currency_id", "company_id", "amount", "debit_amount_currency",
             "credit_amount_currency", "max_date", "create_date", "write_date"],
        )  # fmt: skip
        self.buf.declare(
            "account_full_reconcile",
            ["id", "create_date", "write_date"] + (["name"] if self.v == 16 else []),
        )
        pay_cols = ["id", "move_id", "amount", "payment_type", "partner_type", "currency_id",
                    "partner_id", "outstanding_account_id", "destination_account_id",
                    "payment_reference", "is_reconciled", "is_matched", "create_date",
                    "write_date"]  # fmt: skip
        if self.v == 18:
            pay_cols += ["name", "date", "state", "journal_id", "company_id", "memo", "is_sent"]
            self.buf.declare("account_move__account_payment", ["invoice_id", "payment_id"])
        else:
            pay_cols.append("is_internal_transfer")
        self.buf.declare("account_payment", pay_cols)
        self.buf.declare(
            "ir_attachment",
            ["id", "name", "res_model", "res_field", "res_id", "company_id", "type", "public",
             "db_datas", "store_fname", "file_size", "checksum", "mimetype", "create_date",
             "write_date"],
        )  # fmt: skip

    def _company_moves(self, company: Company, count: int, days: int) -> None:
        kinds = [k for k, _ in KIND_WEIGHTS]
        weights = [w for _, w in KIND_WEIGHTS]
        plan = sorted(
            (self.rng.randrange(days), kind)
            for kind in self.rng.choices(kinds, weights=weights, k=count)
        )
        start = date(self.o.start_year, 1, 1)
        for offset, kind in plan:
            day = start + timedelta(days=offset)
            self._due_payments(day)
            if kind == "entry":
                self._misc_entry(company, day)
            else:
                self._invoice(company, day, kind)
            if len(self.buf.rows["account_move_line"]) >= FLUSH_LINES:
                self.buf.flush()
        self._due_payments(self.end_date + timedelta(days=1))

    def _due_payments(self, day: date) -> None:
        while self.payment_heap and self.payment_heap[0][0] <= day:
            _, _, planned = heapq.heappop(self.payment_heap)
            self._payment(planned)

    def _number(
        self, journal: Journal, day: date, refund=False, payment=False
    ) -> tuple[str, str, int]:
        if journal.monthly:
            prefix = monthly_prefix(journal.code, day.year, day.month, refund=refund)
        else:
            prefix = yearly_prefix(journal.code, day.year, refund=refund, payment=payment)
        key = (journal.id, prefix)
        number = self.seq_next.get(key, 1)
        self.seq_next[key] = number + 1
        return format_number(prefix, number, journal.monthly), prefix, number

    def _amount(self, currency: Currency, low: float, high: float) -> int:
        """A random amount in minor units of ``currency``, drawn in EUR and converted."""
        return round(self.rng.uniform(low, high) * currency.per_eur * 10**currency.decimals)

    @staticmethod
    def _convert(minor: int, source: Currency, target: Currency) -> int:
        value = minor / 10**source.decimals / source.per_eur * target.per_eur
        return round(value * 10**target.decimals)

    def _invoice(self, company: Company, day: date, kind: str) -> None:
        rng = self.rng
        customer = kind.startswith("out_")
        refund = kind.endswith("refund")
        journal = company.journals["INV" if customer else "BILL"]
        ccy = company.currency
        doc_ccy = ccy
        if rng.random() < 0.15:
            doc_ccy = rng.choice([c for c in self.currencies if c.id != ccy.id])
        partner = rng.choice(self.partners)
        roll = rng.random()
        state = "posted" if roll < 0.98 else "draft" if roll < 0.99 else "cancel"

        # Sign of the product/tax lines in company terms: customer invoice lines are credits.
        sign = -1 if customer != refund else 1
        lines: list[Line] = []
        untaxed_doc = untaxed = 0
        for _ in range(rng.randint(1, 3)):
            doc = self._amount(doc_ccy, 20, 4000)
            bal = self._convert(doc, doc_ccy, ccy) if doc_ccy is not ccy else doc
            untaxed_doc += doc
            untaxed += bal
            qty = rng.randint(1, 20)
            lines.append(Line(
                company.accounts["income" if customer else "expense"], partner,
                rng.choice(PRODUCTS), "product", doc_ccy, sign * bal, sign * doc,
                quantity=f"{qty}.00", price_unit=repr(doc / 10**doc_ccy.decimals / qty),
                subtotal=money(doc, doc_ccy.decimals),
                total=money(round(doc * (1 + TAX_RATE)), doc_ccy.decimals),
            ))  # fmt: skip
        tax_doc = round(untaxed_doc * TAX_RATE)
        tax = self._convert(tax_doc, doc_ccy, ccy) if doc_ccy is not ccy else tax_doc
        lines.append(Line(
            company.accounts["tax_out" if customer else "tax_in"], partner, "Tax 15%", "tax",
            doc_ccy, sign * tax, sign * tax_doc, tax_base=money(untaxed, ccy.decimals),
        ))  # fmt: skip
        total, total_doc = untaxed + tax, untaxed_doc + tax_doc
        term = Line(
            company.accounts["receivable" if customer else "payable"], partner, "",
            "payment_term", doc_ccy, -sign * total, -sign * total_doc,
            residual=-sign * total, residual_currency=-sign * total_doc,
            date_maturity=day + timedelta(days=30),
        )  # fmt: skip
        lines.append(term)

        move_id = self.new_id("account_move")
        for line in lines:
            line.id = self.new_id("account_move_line")
        name, prefix, number = ("/", *split_name("/"))
        if state == "posted":
            name, prefix, number = self._number(journal, day, refund=refund)
            term.name = name

        payment_state = "not_paid"
        planned = None
        if state == "posted" and not refund and rng.random() < PAID_SHARE:
            when = day + timedelta(days=rng.randint(0, 45))
            if when <= self.end_date:
                partial = rng.random() < PARTIAL_SHARE
                paid = total // 2 if partial else total
                paid_doc = total_doc // 2 if partial else total_doc
                partial_id = self.new_id("account_partial_reconcile")
                full_id = None if partial else self.new_id("account_full_reconcile")
                planned = PlannedPayment(when, move_id, name, term.id, partner, customer, doc_ccy,
                                         paid, paid_doc, partial_id, full_id, company)  # fmt: skip
                term.residual = -sign * (total - paid)
                term.residual_currency = -sign * (total_doc - paid_doc)
                term.reconciled = not partial
                term.full_id = full_id
                term.matching = self._matching(partial_id, full_id)
                payment_state = "partial" if partial else "paid"
                self.heap_tick += 1
                heapq.heappush(self.payment_heap, (when, self.heap_tick, planned))

        created = datetime.combine(day, datetime.min.time()) + timedelta(
            hours=8, seconds=move_id % 28_800
        )
        written = created
        if planned is not None:
            written = max(created, self._payment_time(planned))
        attachment = None
        if state == "posted" and customer and not refund and move_id % self.attach_every == 0:
            if self.attachments < self.o.attachments:
                attachment = self._attachment(company, move_id, name, created)
        amounts = {
            "untaxed": (untaxed_doc, untaxed), "tax": (tax_doc, tax), "total": (total_doc, total),
            "residual": (abs(term.residual_currency), abs(term.residual)),
        }  # fmt: skip
        self._write_move(
            company,
            journal,
            move_id,
            name,
            prefix,
            number,
            state,
            kind,
            day,
            partner,
            doc_ccy,
            lines,
            amounts,
            payment_state,
            created,
            written,
            attachment,
        )

    def _matching(self, partial_id: int, full_id: int | None) -> str:
        if self.v == 16:
            return f"A{full_id}" if full_id is not None else "P"
        return str(full_id) if full_id is not None else f"P{partial_id}"

    def _payment_time(self, planned: PlannedPayment) -> datetime:
        return datetime.combine(planned.when, datetime.min.time()) + timedelta(
            hours=16, seconds=planned.partial_id % 3600
        )

    def _misc_entry(self, company: Company, day: date) -> None:
        rng = self.rng
        journal = company.journals["MISC"]
        ccy = company.currency
        debit_keys = ["expense", "depreciation"]
        credit_keys = ["accrual", "equity"]
        amounts = [self._amount(ccy, 50, 9000) for _ in range(rng.randint(1, 3))]
        labels = ["Monthly accrual", "Depreciation", "Reclassification", "Year-end adjustment"]
        label = rng.choice(labels)
        lines = [
            Line(company.accounts[rng.choice(debit_keys)], None, label, "product", ccy, a, a)
            for a in amounts
        ]
        total = sum(amounts)
        lines.append(
            Line(
                company.accounts[rng.choice(credit_keys)],
                None,
                label,
                "product",
                ccy,
                -total,
                -total,
            )
        )
        move_id = self.new_id("account_move")
        for line in lines:
            line.id = self.new_id("account_move_line")
        roll = rng.random()
        state = "posted" if roll < 0.97 else "cancel" if roll < 0.99 else "draft"
        if state == "draft":
            name, prefix, number = ("/", *split_name("/"))
        else:
            name, prefix, number = self._number(journal, day)
        created = datetime.combine(day, datetime.min.time()) + timedelta(
            hours=12, seconds=move_id % 14_400
        )
        totals = {"untaxed": (0, 0), "tax": (0, 0), "total": (total, total), "residual": (0, 0)}
        self._write_move(
            company,
            journal,
            move_id,
            name,
            prefix,
            number,
            state,
            "entry",
            day,
            None,
            ccy,
            lines,
            totals,
            "not_paid",
            created,
            created,
            None,
            posted_before=state == "cancel",
        )

    def _payment(self, p: PlannedPayment) -> None:
        company = p.company
        journal = company.journals["BNK1"]
        ccy = company.currency
        move_id = self.new_id("account_move")
        payment_id = self.new_id("account_payment")
        name, prefix, number = self._number(journal, p.when, payment=True)
        sign = 1 if p.inbound else -1
        liquidity = Line(
            company.accounts["receipts" if p.inbound else "payments"], p.partner_id,
            f"Payment {p.invoice_name}", "product", p.currency, sign * p.amount,
            sign * p.amount_currency, residual=sign * p.amount,
            residual_currency=sign * p.amount_currency, payment_id=payment_id,
        )  # fmt: skip
        counterpart = Line(
            company.accounts["receivable" if p.inbound else "payable"], p.partner_id,
            f"Payment {p.invoice_name}", "payment_term", p.currency, -sign * p.amount,
            -sign * p.amount_currency, reconciled=True, full_id=p.full_id,
            matching=self._matching(p.partial_id, p.full_id), payment_id=payment_id,
        )  # fmt: skip
        lines = [liquidity, counterpart]
        for line in lines:
            line.id = self.new_id("account_move_line")
        created = self._payment_time(p)
        totals = {
            "untaxed": (0, 0), "tax": (0, 0), "total": (p.amount_currency, p.amount),
            "residual": (0, 0),
        }  # fmt: skip
        self._write_move(
            company,
            journal,
            move_id,
            name,
            prefix,
            number,
            "posted",
            "entry",
            p.when,
            p.partner_id,
            p.currency,
            lines,
            totals,
            "not_paid",
            created,
            created,
            None,
            payment_id=payment_id,
        )
        debit_line, credit_line = (
            (p.invoice_line_id, counterpart.id)
            if p.inbound
            else (counterpart.id, p.invoice_line_id)
        )
        d = p.currency.decimals
        self.buf.add(
            "account_partial_reconcile",
            f"{p.partial_id}\t{debit_line}\t{credit_line}\t{_i(p.full_id)}\t{p.currency.id}\t"
            f"{p.currency.id}\t{company.id}\t{money(p.amount, ccy.decimals)}\t"
            f"{money(p.amount_currency, d)}\t{money(p.amount_currency, d)}\t{p.when}\t"
            f"{_ts(created)}\t{_ts(created)}",
        )
        if p.full_id is not None:
            row = f"{p.full_id}\t{_ts(created)}\t{_ts(created)}"
            if self.v == 16:
                row += f"\tA{p.full_id}"
            self.buf.add("account_full_reconcile", row)
        self._write_payment(company, journal, p, payment_id, move_id, name, created)

    def _write_payment(self, company, journal, p, payment_id, move_id, name, created) -> None:
        row = [str(payment_id), str(move_id), money(p.amount_currency, p.currency.decimals),
               "inbound" if p.inbound else "outbound", "customer" if p.inbound else "supplier",
               str(p.currency.id), str(p.partner_id),
               str(company.accounts["receipts" if p.inbound else "payments"]),
               str(company.accounts["receivable" if p.inbound else "payable"]),
               _t(p.invoice_name), _b(p.full_id is not None), "f", _ts(created),
               _ts(created)]  # fmt: skip
        if self.v == 18:
            row += [_t(name), str(p.when), "paid" if p.full_id is not None else "in_process",
                    str(journal.id), str(company.id), _t(p.invoice_name), "f"]  # fmt: skip
            self.buf.add("account_move__account_payment", f"{p.invoice_move_id}\t{payment_id}")
        else:
            row.append("f")
        self.buf.add("account_payment", "\t".join(row))

    def _attachment(self, company: Company, move_id: int, name: str, created: datetime) -> int:
        body = (
            f"%PDF-1.4\n% Invoice {name} issued by {company.name}\n".encode()
            + self.rng.randbytes(self.rng.randint(200, 3000))
            + b"\n%%EOF\n"
        )
        checksum = hashlib.sha1(body).hexdigest()
        fname = f"{checksum[:2]}/{checksum}"
        if self.o.filestore:
            path = self.o.filestore / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            db_datas, store = N, fname
        else:
            db_datas, store = "\\\\x" + body.hex(), None
        first = None
        copies = 2 if self.attachments % 25 == 0 else 1  # the same file attached twice: dedup
        for copy in range(copies):
            aid = self.new_id("ir_attachment")
            first = first or aid
            label = name.replace("/", "_") + (".pdf" if copy == 0 else " (copy).pdf")
            self.buf.add(
                "ir_attachment",
                f"{aid}\t{_t(label)}\taccount.move\t\\N\t{move_id}\t{company.id}\tbinary\tf\t"
                f"{db_datas}\t{_t(store)}\t{len(body)}\t{checksum}\tapplication/pdf\t"
                f"{_ts(created)}\t{_ts(created)}",
            )
        self.attachments += 1
        return first

    def _write_move(
        self, company, journal, move_id, name, prefix, number, state, kind, day, partner,
        doc_ccy, lines, amounts, payment_state, created, written, attachment,
        posted_before=None, payment_id=None,
    ) -> None:  # fmt: skip
        ccy = company.currency
        secure_number, inalterable = self._hash(journal, move_id, name, prefix, state, day, lines)
        inbound = kind in ("out_invoice", "in_refund")
        is_invoice = kind != "entry"
        signed = 1 if kind in ("out_invoice", "in_refund") else -1
        if kind == "entry":
            signed = 1
        (u_doc, u), (t_doc, t), (tot_doc, tot), (r_doc, r) = (
            amounts["untaxed"],
            amounts["tax"],
            amounts["total"],
            amounts["residual"],
        )
        dd, cd = doc_ccy.decimals, ccy.decimals
        posted = state == "posted"
        row = [
            str(move_id), _t(name), N, state, kind, str(day),
            str(day) if is_invoice else N,
            str(day + timedelta(days=30)) if is_invoice else N,
            str(journal.id), str(company.id), str(doc_ccy.id), _i(partner), _i(partner),
            _t(prefix), str(number), _b(posted if posted_before is None else posted_before),
            _i(secure_number), _t(inalterable), payment_state if is_invoice else "not_paid",
            money(u_doc, dd), money(t_doc, dd), money(tot_doc, dd), money(r_doc, dd),
            money(signed * u, cd), money(signed * t, cd), money(signed * tot, cd),
            money(signed * r, cd), money(signed * tot_doc, dd), "no", "f",
            _b(posted and inbound), _i(attachment), "2", _ts(created), "2", _ts(written),
        ]  # fmt: skip
        if self.v in (16, 17):
            row += [_i(payment_id), "f"]
            if self.v == 17:
                row.append(str(day) if is_invoice else N)
        else:
            row += [_i(payment_id), "t", "f", "1.0" if is_invoice else N]
        self.buf.add("account_move", "\t".join(row))

        head = f"{move_id}\t{_t(name)}\t{day}\t\\N\t{state}\t{journal.id}\t{company.id}\t{ccy.id}\t"
        tail = f"\t2\t{_ts(created)}\t2\t{_ts(written)}"
        if self.v == 16:
            tail += "\tf\t\\N"
        elif self.v == 17:
            tail += f"\t{day if is_invoice else N}\tf"
        else:
            tail += f"\t{day if is_invoice else N}"
        for seq, ln in enumerate(lines, start=10):
            bal = ln.balance
            debit, credit = (bal, 0) if bal > 0 else (0, -bal)
            ld = ln.currency.decimals
            self.buf.add(
                "account_move_line",
                f"{head}{ln.id}\t{ln.account}\t{_i(ln.partner)}\t{_t(ln.name)}\t"
                f"{ln.display_type}\t{seq}\t{ln.currency.id}\t{money(debit, cd)}\t"
                f"{money(credit, cd)}\t{money(bal, cd)}\t{money(ln.amount_currency, ld)}\t"
                f"{money(ln.residual, cd)}\t{money(ln.residual_currency, ld)}\t"
                f"{_b(ln.reconciled)}\t{_i(ln.full_id)}\t{_t(ln.matching)}\t{_i(ln.payment_id)}\t"
                f"{ln.tax_base}\t{ln.quantity}\t{ln.price_unit}\t{ln.subtotal}\t{ln.total}\t"
                f"{ln.date_maturity or N}{tail}",
            )
        self.lines_written += len(lines)

    def _hash(
        self, journal, move_id, name, prefix, state, day, lines
    ) -> tuple[int | None, str | None]:
        """Secure number and hash for a posted move of a restricted journal, chained as the
        version does: 16/17 per journal by secure number; 18 per journal and prefix (``$4$``),
        with moves of the first year kept as pre-upgrade legacy hashes."""
        if not (journal.restricted and state == "posted"):
            return None, None
        hmove = hashchain.HashMove(move_id, name, day, journal.id, journal.company_id)
        hlines = [
            hashchain.HashLine(
                ln.id,
                ln.name,
                max(ln.balance, 0) / 10 ** self._cd(journal),
                max(-ln.balance, 0) / 10 ** self._cd(journal),
                ln.account,
                ln.partner,
                ln.currency.decimals,
            )
            for ln in lines
        ]
        legacy = self.v in (16, 17) or day <= self.first_year_end
        if legacy:
            key: object = journal.id
            secure = self.secure_next.get(journal.id, 1)
            self.secure_next[journal.id] = secure + 1
            version = 3
        else:
            key, secure, version = (journal.id, prefix), None, 4
        digest = hashchain.compute(self.chain_last.get(key), hmove, hlines, version)
        self.chain_last[key] = digest
        self.hashed += 1
        return secure, digest

    def _cd(self, journal: Journal) -> int:
        return self.company_by_id[journal.company_id].currency.decimals


def database_name(dsn: str) -> str:
    name = conninfo.conninfo_to_dict(dsn).get("dbname")
    if not name:
        raise SeedError("the DSN names no database (dbname=...)")
    return str(name)


def _connect(dsn: str, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg.OperationalError as exc:
        raise SeedError(f"could not connect to {_safe(dsn)}: {str(exc).strip()}") from exc


def _safe(dsn: str) -> str:
    parts = conninfo.conninfo_to_dict(dsn)
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def ensure_database(dsn: str) -> bool:
    """Create the DSN's database (through the server's ``postgres`` database) if it is missing;
    True when it was created."""
    name = database_name(dsn)
    admin = conninfo.make_conninfo(dsn, dbname="postgres")
    with _connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
            sql.Identifier(name)))  # fmt: skip
        log.info("created database %s", name)
        return True


# Tables (plain, partitioned, foreign, materialised) and views in every schema but the
# system's own (information_schema, and the pg_ names, which users cannot create).
USER_RELATIONS_SQL = """
SELECT n.nspname, count(*)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'f', 'm', 'v')
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
GROUP BY n.nspname ORDER BY n.nspname
"""


def _prepare_schema(conn: psycopg.Connection, options: SeedOptions, name: str) -> None:
    """Refuse a database that holds anything of its own, in any schema, unless ``force``:
    tables outside ``public`` are someone's data too. ``force`` recreates ``public`` only,
    where the generated tables go; other schemas are left as they are."""
    per_schema = dict(conn.execute(USER_RELATIONS_SQL).fetchall())
    tables = sum(per_schema.values())
    where = ", ".join(f"{schema_name}: {count}" for schema_name, count in per_schema.items())
    if tables and not options.force:
        raise SeedError(
            f"database {name} already holds {tables} {'table' if tables == 1 else 'tables'}; "
            f"pass --force to drop and recreate the public schema (tables per schema: {where}; "
            "other schemas are kept)"
        )
    if tables:
        log.info("dropping the public schema of %s (--force); tables per schema: %s", name, where)
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    for statement in schema.create_table_ddl(options.odoo, options.queue_jobs):
        conn.execute(statement)


def _prepare_filestore(folder: Path | None) -> None:
    """Make the filestore folder, or say why it cannot be one, before the database is made."""
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise SeedError(f"the filestore {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeedError(f"the filestore folder {folder} cannot be made: {exc}") from exc


def seed_database(dsn: str, options: SeedOptions) -> SeedResult:
    """Create (or with ``force`` recreate) an Odoo-shaped finance database at ``dsn``."""
    started = time.monotonic()
    name = database_name(dsn)
    _prepare_filestore(options.filestore)
    ensure_database(dsn)
    with _connect(dsn) as conn:
        _prepare_schema(conn, options, name)
        conn.execute("SET synchronous_commit = off")
        buffers = Buffers(conn, options.odoo, options.queue_jobs)
        gen = Generator(options, buffers)
        try:
            gen.static_data()
            gen.moves()
            gen.write_secure_sequences()
            buffers.finish()
        finally:
            buffers.close()
        loaded = time.monotonic()
        log.info("loaded %s lines in %.1fs; building keys and indexes", gen.lines_written,
                 loaded - started)  # fmt: skip
        for statement in schema.post_load_ddl(options.odoo, options.queue_jobs):
            conn.execute(statement)
        for statement in schema.reset_sequences_sql(options.odoo, options.queue_jobs):
            conn.execute(statement)
        conn.commit()
    with _connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    counts = buffers.counts
    result = SeedResult(
        database=name,
        odoo_version=f"{options.odoo}.0",
        companies=options.companies,
        moves=counts.get("account_move", 0),
        lines=counts.get("account_move_line", 0),
        partial_reconciles=counts.get("account_partial_reconcile", 0),
        full_reconciles=counts.get("account_full_reconcile", 0),
        hashed_moves=gen.hashed,
        attachments=counts.get("ir_attachment", 0),
        cron_jobs=counts.get("ir_cron", 0),
        queue_jobs=counts.get("queue_job", 0),
        attachment_location="file" if options.filestore else ATTACHMENT_LOCATION_DB,
        filestore=str(options.filestore) if options.filestore else None,
        duration_s=round(time.monotonic() - started, 3),
    )
    log.info("seeded %s: %s moves, %s lines in %.1fs", name, result.moves, result.lines,
             result.duration_s)  # fmt: skip
    return result
