"""A small orchestration that shows the host working: a chain, a fan-out and an approval wait."""

from datetime import timedelta

import azure.durable_functions as df

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration="sample_hello")
def sample_hello(context: df.DurableOrchestrationContext):
    """Greet each name in turn, then greet them all at once, then wait briefly for a nod."""
    names = context.get_input() or ["Odoo", "Azure", "Finance"]

    chained = []
    for name in names:
        chained.append((yield context.call_activity("sample_greet", name)))

    fanned = yield context.task_all([context.call_activity("sample_greet", n) for n in names])

    # The wait is bounded by a timer so that the sample ends on its own.
    deadline = context.current_utc_datetime + timedelta(seconds=2)
    timer = context.create_timer(deadline)
    nod = context.wait_for_external_event("nod")
    context.set_custom_status({"phase": "waiting for a nod"})
    winner = yield context.task_any([nod, timer])
    if winner is nod:
        timer.cancel()

    return {"chained": chained, "fanned": fanned, "nodded": winner is nod}
