"""Odoo 16, 17 and 18 table shapes for the finance parts the checks read.

Columns, types, constraint and index names follow what Odoo of each version creates (column
types as the ORM maps fields, section 0.2 of the schema notes). Tables are created bare, the
generator bulk-loads them, and ``post_load_ddl`` then adds keys, checks and indexes, because
building an index once over loaded rows is far cheaper than maintaining it row by row.
"""

from __future__ import annotations

# (column, SQL type, versions that have it). "serial" columns are the integer ids backed by
# <table>_id_seq, as the ORM creates them.
ALL = (16, 17, 18)
V16, V17, V18 = (16,), (17,), (18,)
V16_17, V17_18 = (16, 17), (17, 18)

AUDIT = [
    ("create_uid", "integer", ALL),
    ("create_date", "timestamp without time zone", ALL),
    ("write_uid", "integer", ALL),
    ("write_date", "timestamp without time zone", ALL),
]

TABLES: dict[str, list[tuple[str, str, tuple[int, ...]]]] = {
    "ir_module_module": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", ALL),
        ("state", "character varying", ALL),
        ("latest_version", "character varying", ALL),
        ("author", "character varying", ALL),
        *AUDIT,
    ],
    "ir_config_parameter": [
        ("id", "serial", ALL),
        ("key", "character varying NOT NULL", ALL),
        ("value", "text NOT NULL", ALL),
        *AUDIT,
    ],
    "ir_model_data": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", ALL),
        ("module", "character varying NOT NULL", ALL),
        ("model", "character varying NOT NULL", ALL),
        ("res_id", "integer", ALL),
        ("noupdate", "boolean", ALL),
        *AUDIT,
    ],
    "ir_sequence": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", ALL),
        ("code", "character varying", ALL),
        ("implementation", "character varying NOT NULL", ALL),
        ("active", "boolean", ALL),
        ("prefix", "character varying", ALL),
        ("suffix", "character varying", ALL),
        ("number_next", "integer NOT NULL", ALL),
        ("number_increment", "integer NOT NULL", ALL),
        ("padding", "integer NOT NULL", ALL),
        ("company_id", "integer", ALL),
        ("use_date_range", "boolean", ALL),
        *AUDIT,
    ],
    "res_currency": [
        ("id", "serial", ALL),
        ("name", "character varying(3) NOT NULL", ALL),
        ("symbol", "character varying NOT NULL", ALL),
        ("rounding", "numeric", ALL),
        ("decimal_places", "integer", ALL),
        ("active", "boolean", ALL),
        ("position", "character varying", ALL),
        *AUDIT,
    ],
    "res_partner": [
        ("id", "serial", ALL),
        ("name", "character varying", ALL),
        ("company_id", "integer", ALL),
        ("commercial_partner_id", "integer", ALL),
        ("is_company", "boolean", ALL),
        ("active", "boolean", ALL),
        ("email", "character varying", ALL),
        *AUDIT,
    ],
    "res_company": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", ALL),
        ("partner_id", "integer NOT NULL", ALL),
        ("currency_id", "integer NOT NULL", ALL),
        ("parent_id", "integer", ALL),
        ("parent_path", "character varying", V17_18),
        ("sequence", "integer", ALL),
        ("fiscalyear_last_day", "integer NOT NULL", ALL),
        ("fiscalyear_last_month", "character varying NOT NULL", ALL),
        ("period_lock_date", "date", V16_17),
        ("fiscalyear_lock_date", "date", ALL),
        ("tax_lock_date", "date", ALL),
        ("sale_lock_date", "date", V18),
        ("purchase_lock_date", "date", V18),
        ("hard_lock_date", "date", V18),
        ("account_storno", "boolean", ALL),
        ("check_account_audit_trail", "boolean", V18),
        ("quick_edit_mode", "character varying", ALL),
        *AUDIT,
    ],
    "account_account": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", V16),
        ("name", "jsonb NOT NULL", V17_18),
        ("code", "character varying(64) NOT NULL", V16_17),
        ("code_store", "jsonb", V18),
        ("company_id", "integer NOT NULL", V16_17),
        ("account_type", "character varying NOT NULL", ALL),
        ("internal_group", "character varying", V16_17),
        ("reconcile", "boolean", ALL),
        ("deprecated", "boolean", ALL),
        ("currency_id", "integer", ALL),
        ("non_trade", "boolean", ALL),
        ("include_initial_balance", "boolean", V16_17),
        *AUDIT,
    ],
    "account_account_res_company_rel": [
        ("account_account_id", "integer NOT NULL", V18),
        ("res_company_id", "integer NOT NULL", V18),
    ],
    "account_journal": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", V16),
        ("name", "jsonb NOT NULL", V17_18),
        ("code", "character varying(5) NOT NULL", ALL),
        ("type", "character varying NOT NULL", ALL),
        ("company_id", "integer NOT NULL", ALL),
        ("currency_id", "integer", ALL),
        ("default_account_id", "integer", ALL),
        ("suspense_account_id", "integer", ALL),
        ("active", "boolean", ALL),
        ("sequence", "integer", ALL),
        ("restrict_mode_hash_table", "boolean", ALL),
        ("refund_sequence", "boolean", ALL),
        ("payment_sequence", "boolean", ALL),
        ("sequence_override_regex", "text", ALL),
        ("secure_sequence_id", "integer", V16_17),
        *AUDIT,
    ],
    "account_full_reconcile": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", V16),
        ("exchange_move_id", "integer", ALL),
        *AUDIT,
    ],
    "account_move": [
        ("id", "serial", ALL),
        ("name", "character varying", ALL),
        ("ref", "character varying", ALL),
        ("state", "character varying NOT NULL", ALL),
        ("move_type", "character varying NOT NULL", ALL),
        ("date", "date NOT NULL", ALL),
        ("invoice_date", "date", ALL),
        ("invoice_date_due", "date", ALL),
        ("journal_id", "integer NOT NULL", ALL),
        ("company_id", "integer", ALL),
        ("currency_id", "integer NOT NULL", ALL),
        ("partner_id", "integer", ALL),
        ("commercial_partner_id", "integer", ALL),
        ("sequence_prefix", "character varying", ALL),
        ("sequence_number", "integer", ALL),
        ("posted_before", "boolean", ALL),
        ("secure_sequence_number", "integer", ALL),
        ("inalterable_hash", "character varying", ALL),
        ("payment_state", "character varying", ALL),
        ("amount_untaxed", "numeric", ALL),
        ("amount_tax", "numeric", ALL),
        ("amount_total", "numeric", ALL),
        ("amount_residual", "numeric", ALL),
        ("amount_untaxed_signed", "numeric", ALL),
        ("amount_tax_signed", "numeric", ALL),
        ("amount_total_signed", "numeric", ALL),
        ("amount_residual_signed", "numeric", ALL),
        ("amount_total_in_currency_signed", "numeric", ALL),
        ("auto_post", "character varying NOT NULL", ALL),
        ("is_storno", "boolean", ALL),
        ("is_move_sent", "boolean", ALL),
        ("reversed_entry_id", "integer", ALL),
        ("statement_line_id", "integer", ALL),
        ("message_main_attachment_id", "integer", ALL),
        ("payment_id", "integer", V16_17),
        ("to_check", "boolean", V16_17),
        ("delivery_date", "date", V17_18),
        ("send_and_print_values", "jsonb", V17),
        ("origin_payment_id", "integer", V18),
        ("checked", "boolean", V18),
        ("made_sequence_gap", "boolean", V18),
        ("sending_data", "jsonb", V18),
        ("invoice_currency_rate", "numeric", V18),
        *AUDIT,
    ],
    "account_move_line": [
        ("id", "serial", ALL),
        ("move_id", "integer NOT NULL", ALL),
        ("move_name", "character varying", ALL),
        ("date", "date", ALL),
        ("ref", "character varying", ALL),
        ("parent_state", "character varying", ALL),
        ("journal_id", "integer", ALL),
        ("company_id", "integer", ALL),
        ("company_currency_id", "integer", ALL),
        ("account_id", "integer", ALL),
        ("partner_id", "integer", ALL),
        ("name", "character varying", ALL),
        ("display_type", "character varying NOT NULL", ALL),
        ("sequence", "integer", ALL),
        ("currency_id", "integer NOT NULL", ALL),
        ("debit", "numeric", ALL),
        ("credit", "numeric", ALL),
        ("balance", "numeric", ALL),
        ("amount_currency", "numeric", ALL),
        ("amount_residual", "numeric", ALL),
        ("amount_residual_currency", "numeric", ALL),
        ("reconciled", "boolean", ALL),
        ("full_reconcile_id", "integer", ALL),
        ("matching_number", "character varying", ALL),
        ("payment_id", "integer", ALL),
        ("tax_base_amount", "numeric", ALL),
        ("quantity", "numeric", ALL),
        ("price_unit", "double precision", ALL),
        ("price_subtotal", "numeric", ALL),
        ("price_total", "numeric", ALL),
        ("date_maturity", "date", ALL),
        ("invoice_date", "date", V17_18),
        ("blocked", "boolean", V16_17),
        ("tax_audit", "character varying", V16),
        *AUDIT,
    ],
    "account_partial_reconcile": [
        ("id", "serial", ALL),
        ("debit_move_id", "integer NOT NULL", ALL),
        ("credit_move_id", "integer NOT NULL", ALL),
        ("full_reconcile_id", "integer", ALL),
        ("exchange_move_id", "integer", ALL),
        ("debit_currency_id", "integer", ALL),
        ("credit_currency_id", "integer", ALL),
        ("company_id", "integer", ALL),
        ("amount", "numeric", ALL),
        ("debit_amount_currency", "numeric", ALL),
        ("credit_amount_currency", "numeric", ALL),
        ("max_date", "date", ALL),
        *AUDIT,
    ],
    "account_payment": [
        ("id", "serial", ALL),
        ("move_id", "integer NOT NULL", V16_17),
        ("move_id", "integer", V18),
        ("name", "character varying", V18),
        ("date", "date NOT NULL", V18),
        ("state", "character varying NOT NULL", V18),
        ("journal_id", "integer NOT NULL", V18),
        ("company_id", "integer NOT NULL", V18),
        ("memo", "character varying", V18),
        ("is_sent", "boolean", V18),
        ("amount", "numeric", ALL),
        ("payment_type", "character varying NOT NULL", ALL),
        ("partner_type", "character varying NOT NULL", ALL),
        ("currency_id", "integer", ALL),
        ("partner_id", "integer", ALL),
        ("outstanding_account_id", "integer", ALL),
        ("destination_account_id", "integer", ALL),
        ("is_internal_transfer", "boolean", V16_17),
        ("payment_reference", "character varying", ALL),
        ("is_reconciled", "boolean", ALL),
        ("is_matched", "boolean", ALL),
        *AUDIT,
    ],
    "account_move__account_payment": [
        ("invoice_id", "integer NOT NULL", V18),
        ("payment_id", "integer NOT NULL", V18),
    ],
    "ir_attachment": [
        ("id", "serial", ALL),
        ("name", "character varying NOT NULL", ALL),
        ("description", "text", ALL),
        ("res_model", "character varying", ALL),
        ("res_field", "character varying", ALL),
        ("res_id", "integer", ALL),
        ("company_id", "integer", ALL),
        ("type", "character varying NOT NULL", ALL),
        ("url", "character varying(1024)", ALL),
        ("public", "boolean", ALL),
        ("access_token", "character varying", ALL),
        ("db_datas", "bytea", ALL),
        ("store_fname", "character varying", ALL),
        ("file_size", "integer", ALL),
        ("checksum", "character varying(40)", ALL),
        ("mimetype", "character varying", ALL),
        ("index_content", "text", ALL),
        ("original_id", "integer", ALL),
        *AUDIT,
    ],
    "ir_act_server": [
        ("id", "serial", ALL),
        ("name", "jsonb NOT NULL", ALL),
        ("type", "character varying NOT NULL", ALL),
        ("model_name", "character varying", ALL),
        ("state", "character varying NOT NULL", ALL),
        ("code", "text", ALL),
        *AUDIT,
    ],
    "ir_cron": [
        ("id", "serial", ALL),
        ("ir_actions_server_id", "integer NOT NULL", ALL),
        ("cron_name", "character varying", ALL),
        ("user_id", "integer NOT NULL", ALL),
        ("active", "boolean", ALL),
        ("interval_number", "integer", ALL),
        ("interval_type", "character varying", ALL),
        ("nextcall", "timestamp without time zone NOT NULL", ALL),
        ("lastcall", "timestamp without time zone", ALL),
        ("priority", "integer", ALL),
        ("numbercall", "integer", V16_17),
        ("doall", "boolean", V16_17),
        ("failure_count", "integer", V18),
        ("first_failure_date", "timestamp without time zone", V18),
        *AUDIT,
    ],
    "ir_cron_trigger": [
        ("id", "serial", ALL),
        ("cron_id", "integer", ALL),
        ("call_at", "timestamp without time zone", ALL),
        *AUDIT,
    ],
}

QUEUE_JOB = [
    ("id", "serial", ALL),
    ("uuid", "character varying NOT NULL", ALL),
    ("user_id", "integer NOT NULL", ALL),
    ("company_id", "integer", ALL),
    ("name", "character varying", ALL),
    ("model_name", "character varying", ALL),
    ("method_name", "character varying", ALL),
    ("record_ids", "text", ALL),
    ("args", "text", ALL),
    ("kwargs", "text", ALL),
    ("func_string", "character varying", ALL),
    ("state", "character varying NOT NULL", ALL),
    ("priority", "integer", ALL),
    ("eta", "timestamp without time zone", ALL),
    ("date_created", "timestamp without time zone", ALL),
    ("date_enqueued", "timestamp without time zone", ALL),
    ("date_started", "timestamp without time zone", ALL),
    ("date_done", "timestamp without time zone", ALL),
    ("retry", "integer", ALL),
    ("max_retries", "integer", ALL),
    ("channel", "character varying", ALL),
    ("identity_key", "character varying", ALL),
    ("exc_name", "character varying", ALL),
    ("exc_info", "text", ALL),
    ("result", "text", ALL),
    *AUDIT,
]


def table_names(version: int, queue_jobs: bool) -> list[str]:
    """Tables that exist for this version (a table with no column for it is left out)."""
    names = [name for name, cols in TABLES.items() if any(version in v for _, _, v in cols)]
    return names + (["queue_job"] if queue_jobs else [])


def columns(table: str, version: int) -> list[str]:
    """Column names of ``table`` for ``version``, in creation order."""
    spec = QUEUE_JOB if table == "queue_job" else TABLES[table]
    return [name for name, _, versions in spec if version in versions]


def create_table_ddl(version: int, queue_jobs: bool) -> list[str]:
    """CREATE TABLE statements without keys or indexes besides the primary keys."""
    statements = []
    for table in table_names(version, queue_jobs):
        spec = QUEUE_JOB if table == "queue_job" else TABLES[table]
        parts = []
        for name, sql_type, versions in spec:
            if version not in versions:
                continue
            if sql_type == "serial":
                parts.append(f"{name} serial PRIMARY KEY")
            else:
                parts.append(f"{name} {sql_type}")
        statements.append(f"CREATE TABLE {table} ({', '.join(parts)})")
    return statements


def _fk(table: str, column: str, target: str, on_delete: str = "SET NULL") -> str:
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey FOREIGN KEY ({column}) "
        f"REFERENCES {target}(id) ON DELETE {on_delete}"
    )


def post_load_ddl(version: int, queue_jobs: bool) -> list[str]:
    """Keys, CHECK constraints and indexes, named as Odoo names them, created after the load."""
    ddl = [
        "ALTER TABLE res_currency ADD CONSTRAINT res_currency_unique_name UNIQUE (name)",
        "ALTER TABLE res_currency ADD CONSTRAINT res_currency_rounding_gt_zero "
        "CHECK (rounding > 0)",
        "ALTER TABLE ir_config_parameter ADD CONSTRAINT ir_config_parameter_key_uniq UNIQUE (key)",
        "CREATE UNIQUE INDEX ir_module_module_name_uniq ON ir_module_module (name)",
        "CREATE INDEX ir_model_data_model_res_id_index ON ir_model_data (model, res_id)",
        "ALTER TABLE account_journal ADD CONSTRAINT account_journal_code_company_uniq "
        "UNIQUE (company_id, code)",
        _fk("res_company", "currency_id", "res_currency", "RESTRICT"),
        _fk("res_company", "partner_id", "res_partner", "RESTRICT"),
        _fk("account_journal", "company_id", "res_company", "RESTRICT"),
        _fk("account_move", "journal_id", "account_journal", "RESTRICT"),
        _fk("account_move", "company_id", "res_company", "RESTRICT"),
        _fk("account_move", "currency_id", "res_currency", "RESTRICT"),
        _fk("account_move", "partner_id", "res_partner", "RESTRICT"),
        _fk("account_move_line", "move_id", "account_move", "CASCADE"),
        _fk("account_move_line", "account_id", "account_account", "RESTRICT"),
        _fk("account_move_line", "currency_id", "res_currency", "RESTRICT"),
        _fk("account_move_line", "partner_id", "res_partner", "RESTRICT"),
        _fk("account_move_line", "full_reconcile_id", "account_full_reconcile"),
        _fk("account_partial_reconcile", "debit_move_id", "account_move_line", "CASCADE"),
        _fk("account_partial_reconcile", "credit_move_id", "account_move_line", "CASCADE"),
        _fk("account_partial_reconcile", "full_reconcile_id", "account_full_reconcile"),
        _fk("ir_cron", "ir_actions_server_id", "ir_act_server", "RESTRICT"),
        # The four line CHECK constraints, as created in the database.
        "ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_check_credit_debit "
        "CHECK (display_type IN ('line_section', 'line_note') OR credit * debit = 0)",
        "ALTER TABLE account_move_line ADD CONSTRAINT "
        "account_move_line_check_amount_currency_balance_sign CHECK ("
        "display_type IN ('line_section', 'line_note') OR "
        "(balance <= 0 AND amount_currency <= 0) OR (balance >= 0 AND amount_currency >= 0))",
        "ALTER TABLE account_move_line ADD CONSTRAINT "
        "account_move_line_check_accountable_required_fields CHECK ("
        "display_type IN ('line_section', 'line_note') OR account_id IS NOT NULL)",
        "ALTER TABLE account_move_line ADD CONSTRAINT "
        "account_move_line_check_non_accountable_fields_null CHECK ("
        "display_type NOT IN ('line_section', 'line_note') OR (amount_currency = 0 AND "
        "debit = 0 AND credit = 0 AND account_id IS NULL))",
        "ALTER TABLE account_payment ADD CONSTRAINT account_payment_check_amount_not_negative "
        "CHECK (amount >= 0.0)",
        # Indexes the ORM declares on the tables the checks read.
        "CREATE INDEX account_move_line_move_id_index ON account_move_line (move_id)",
        "CREATE INDEX account_move_line_account_id_date_idx ON account_move_line "
        "(account_id, date)",
        "CREATE INDEX account_move_line_date_name_id_idx ON account_move_line "
        "(date DESC, move_name DESC, id)",
        "CREATE INDEX account_move_line__unreconciled_index ON account_move_line "
        "(account_id, partner_id) WHERE reconciled IS NOT TRUE AND parent_state = 'posted'",
        "CREATE INDEX account_move_line__full_reconcile_id_index ON account_move_line "
        "(full_reconcile_id) WHERE full_reconcile_id IS NOT NULL",
        "CREATE INDEX account_move_sequence_index ON account_move "
        "(journal_id, sequence_prefix DESC, sequence_number DESC, name)",
        "CREATE INDEX account_move_sequence_index2 ON account_move "
        "(journal_id, id DESC, sequence_prefix)",
        "CREATE INDEX account_move_journal_id_company_id_idx ON account_move "
        "(journal_id, state, payment_state, move_type, date)",
        "CREATE INDEX account_partial_reconcile_debit_move_id_index ON "
        "account_partial_reconcile (debit_move_id)",
        "CREATE INDEX account_partial_reconcile_credit_move_id_index ON "
        "account_partial_reconcile (credit_move_id)",
        "CREATE INDEX ir_attachment_res_idx ON ir_attachment (res_model, res_id)",
        "CREATE INDEX ir_attachment_store_fname_index ON ir_attachment (store_fname)",
        "CREATE INDEX ir_cron_trigger_call_at_index ON ir_cron_trigger (call_at)",
    ]
    if version in (17, 18):
        # 17 and 18 create the unique index in _auto_init; 16 relies on a Python check only.
        ddl.append(
            "CREATE UNIQUE INDEX account_move_unique_name ON account_move (name, journal_id) "
            "WHERE (state = 'posted' AND name <> '/')"
        )
    if version in (16, 17):
        ddl += [
            "ALTER TABLE account_account ADD CONSTRAINT account_account_code_company_uniq "
            "UNIQUE (code, company_id)",
            _fk("account_account", "company_id", "res_company", "RESTRICT"),
            _fk("account_move", "payment_id", "account_payment"),
            _fk("account_payment", "move_id", "account_move", "CASCADE"),
            _fk("account_journal", "secure_sequence_id", "ir_sequence"),
            "CREATE INDEX account_move_sequence_index3 ON account_move "
            "(journal_id, sequence_prefix DESC, (sequence_number + 1) DESC)",
            "CREATE INDEX account_move_to_check_idx ON account_move (journal_id) "
            "WHERE to_check = true",
        ]
    if version == 18:
        ddl += [
            "ALTER TABLE account_account_res_company_rel ADD PRIMARY KEY "
            "(account_account_id, res_company_id)",
            _fk("account_move", "origin_payment_id", "account_payment"),
            _fk("account_payment", "move_id", "account_move", "CASCADE"),
            "ALTER TABLE account_move__account_payment ADD PRIMARY KEY (invoice_id, payment_id)",
            "CREATE INDEX account_move_made_gaps ON account_move (journal_id, company_id, date) "
            "WHERE made_sequence_gap = true",
            "CREATE INDEX account_move_checked_idx ON account_move (journal_id) "
            "WHERE (checked IS NOT TRUE)",
        ]
    if queue_jobs:
        ddl.append("CREATE INDEX queue_job_uuid_index ON queue_job (uuid)")
        ddl.append("CREATE INDEX queue_job_state_index ON queue_job (state)")
    return ddl


def reset_sequences_sql(version: int, queue_jobs: bool) -> list[str]:
    """setval every <table>_id_seq to the table's max id, as after a real Odoo's inserts."""
    out = []
    for table in table_names(version, queue_jobs):
        if "id" in columns(table, version):
            out.append(
                f"SELECT setval('{table}_id_seq', COALESCE((SELECT max(id) FROM {table}), 0) + 1,"
                " false)"
            )
    return out
