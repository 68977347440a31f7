"""serve's start-up: local.settings.json, the settings devhost adds, the service starters."""

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import requests

from drctl.cli import CommandError
from drctl.commands.serve import ServeContext, StarterSpec, build_starters
from tests.plugins.devhost import TEST_APP


def test_local_settings_values_become_app_settings(devhost_factory, tmp_path):
    app_dir = tmp_path / "app"
    shutil.copytree(TEST_APP, app_dir)
    (app_dir / "local.settings.json").write_text(
        json.dumps({"IsEncrypted": False, "Values": {"TEST_SETTING": "from-file", "N": 5}})
    )
    host = devhost_factory(app_dir=app_dir).start()

    def get(name):
        return requests.get(f"{host.url}/api/settings/{name}", timeout=5).json()["value"]

    assert get("TEST_SETTING") == "from-file"
    assert get("N") == "5"
    assert get("DR_HOST_URL") == host.url
    assert get("DR_STATE_DIR") == str(Path(host.state_dir).resolve())
    host.stop()


class _Fake:
    def __init__(self, ctx):
        self.ctx = ctx

    def start(self): ...

    def stop(self): ...

    def settings(self):
        return {"FAKE": "1"}


class _FromContext(_Fake):
    @classmethod
    def from_serve_context(cls, ctx):
        obj = cls(ctx)
        obj.built_by = "from_serve_context"
        return obj


@pytest.fixture
def fake_module(monkeypatch):
    module = types.ModuleType("tests.devhost.fake_services")
    module.Fake = _Fake
    module.FromContext = _FromContext
    monkeypatch.setitem(sys.modules, "tests.devhost.fake_services", module)
    module.__spec__ = types.SimpleNamespace(name=module.__name__)
    return module


def _ctx(tmp_path, topology=None):
    return ServeContext(tmp_path, tmp_path / "state", 7071, "http://127.0.0.1:7071", topology)


def test_starters_are_built_from_context_and_missing_modules_are_skipped(tmp_path, fake_module):
    specs = [
        StarterSpec("fake", "tests.devhost.fake_services", "Fake"),
        StarterSpec("ctx", "tests.devhost.fake_services", "FromContext"),
        StarterSpec("absent", "tests.devhost.no_such_module", "Nothing"),
        StarterSpec("needs-topology", "tests.devhost.fake_services", "Fake", True),
    ]
    built = build_starters(_ctx(tmp_path), specs)
    assert [type(b).__name__ for b in built] == ["_Fake", "_FromContext"]
    assert built[1].built_by == "from_serve_context"
    assert built[0].ctx.host_url == "http://127.0.0.1:7071"


def test_topology_without_local_azure_cannot_run(tmp_path, fake_module):
    specs = [StarterSpec("localazure", "tests.devhost.no_such_module", "LocalAzure", True)]
    with pytest.raises(CommandError, match="--topology needs"):
        build_starters(_ctx(tmp_path, tmp_path / "topology.yaml"), specs)
