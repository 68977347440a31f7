"""Test app: the plan executor with fake activities (see fakes.py)."""

import azure.durable_functions as df
import azure.functions as func

from orchestrators.plan import bp as plan_bp
from tests.plans.app.fakes import bp as fakes_bp

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(plan_bp)
app.register_functions(fakes_bp)
