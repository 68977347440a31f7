"""HTTP starter for the sample orchestration."""

import json

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()


@bp.route(route="samples/hello", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def start_sample(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """Start the sample orchestration with the names in the body (a JSON list), if any."""
    names = None
    if req.get_body():
        try:
            names = json.loads(req.get_body())
        except ValueError:
            return func.HttpResponse(
                json.dumps({"error": "body is not JSON"}),
                status_code=400,
                mimetype="application/json",
            )
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            return func.HttpResponse(
                json.dumps({"error": "body must be a JSON list of names"}),
                status_code=400,
                mimetype="application/json",
            )
    instance_id = await client.start_new("sample_hello", None, names)
    return client.create_check_status_response(req, instance_id)
