"""The app's function index, built once per test process (indexing twice is refused)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def http_triggers() -> dict[str, dict]:
    """Function name -> its HTTP trigger binding, for every HTTP function of the app."""
    from tests.app_index import functions

    out = {}
    for function in functions():
        trigger = function.get_trigger().get_dict_repr()
        if trigger.get("type") == "httpTrigger":
            out[function.get_function_name()] = trigger
    return out
