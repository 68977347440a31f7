"""Shared pytest fixtures; each group lives in its own plugin module under tests/plugins/."""

pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.azurite",
    "tests.plugins.localazure_network",
    "tests.plugins.devhost",
    "tests.plugins.localazure",
    "tests.plugins.stack",
]
