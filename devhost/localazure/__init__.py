"""Local Azure: ARM, Key Vault and PostgreSQL flexible servers on one machine, for devhost.

``LocalAzure(state_dir, topology_path).start()`` serves them over HTTPS on 127.0.0.1;
``devhost.localazure.arm`` is the framework providers are built on.
"""

from devhost.localazure.server import LocalAzure

__all__ = ["LocalAzure"]
