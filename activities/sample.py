"""The sample orchestration's one activity."""

import azure.durable_functions as df

bp = df.Blueprint()


@bp.activity_trigger(input_name="name", activity="sample_greet")
def sample_greet(name: str) -> str:
    """Return a greeting for one name."""
    return f"Hello {name}"
