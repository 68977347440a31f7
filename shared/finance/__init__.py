"""Finance integrity of an Odoo database: an Odoo-shaped generator and the post-restore checks.

Everything here talks plain SQL to PostgreSQL through psycopg; no Odoo process is involved.
``seed`` builds realistic Odoo 16, 17 and 18 finance databases, ``validate`` runs the checks
whose ids and report shape are the product's contract (docs/validation.md).
"""

SUPPORTED_VERSIONS = (16, 17, 18)
