"""devhost's Azurite: install once, start on free ports, found by other processes, stopped."""

from pathlib import Path

import pytest
import requests

from devhost.azurite import Azurite, AzuriteUnavailable, running_settings


def test_running_azurite_is_found_through_its_state_dir_and_forgotten_when_stopped(tmp_path):
    azurite = Azurite(tmp_path).start()
    try:
        settings = azurite.settings()
        assert running_settings(tmp_path) == settings
        assert f"127.0.0.1:{azurite.blob_port}" in settings["AzureWebJobsStorage"]
        answer = requests.get(
            f"http://127.0.0.1:{azurite.blob_port}/devstoreaccount1?comp=list", timeout=10
        )
        assert answer.status_code in (200, 403)
    finally:
        azurite.stop()
    assert running_settings(tmp_path) is None
    assert not (tmp_path / "azurite" / "endpoint.json").exists()


def test_settings_before_start_say_it_is_not_started(tmp_path):
    with pytest.raises(AzuriteUnavailable, match="not started"):
        Azurite(tmp_path).settings()


def test_missing_npm_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("devhost.azurite.shutil.which", lambda name: None)
    with pytest.raises(AzuriteUnavailable, match="npm was not found"):
        Azurite(tmp_path, cache_dir=tmp_path / "empty-cache").ensure_installed()


def test_serve_builds_it_over_the_serve_state_dir(tmp_path):
    class Ctx:
        state_dir = tmp_path

    assert Azurite.from_serve_context(Ctx()).data_dir == tmp_path / "azurite"
