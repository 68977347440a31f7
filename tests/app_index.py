"""The Functions app's index, built once per test process.

``get_functions()`` indexes an app object once and refuses a second call ("does not have a
unique function name"), so every test that inspects the app's functions reads them here.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def functions() -> tuple:
    import function_app

    return tuple(function_app.app.get_functions())
