"""The Functions app: one DFApp with the blueprints of triggers, orchestrators and activities."""

import azure.durable_functions as df
import azure.functions as func

from activities import blueprints as activity_blueprints
from orchestrators import blueprints as orchestrator_blueprints
from triggers import blueprints as trigger_blueprints

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (*trigger_blueprints, *orchestrator_blueprints, *activity_blueprints):
    app.register_functions(blueprint)
