"""LocalAzure: the HTTPS endpoint on 127.0.0.1 that answers ARM and Key Vault calls.

It runs aiohttp in a thread of its own with its own event loop, so a synchronous caller (devhost,
a test) can ``start()`` it, read ``settings()`` and ``stop()`` it. Providers are modules listed
in ``PROVIDERS``; a module that does not exist (yet) is skipped.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import secrets
import ssl
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost.localazure.arm import (
    ArmError,
    ArmResponse,
    LocalAzureState,
    OperationsProvider,
    ProviderEnv,
    RawHandler,
    RawRequest,
    Router,
    dispatch,
)
from devhost.localazure.ca import CertFiles, ensure_certificates
from devhost.localazure.topology import load_topology

log = logging.getLogger(__name__)

# Provider modules, in routing order. Each has create_provider(env) -> Provider.
PROVIDERS = [
    "devhost.localazure.control",
    "devhost.localazure.postgres",
    "devhost.localazure.keyvault",
    "devhost.localazure.trafficmanager",
    "devhost.localazure.aks",
    "devhost.localazure.kubernetes",
    "devhost.localazure.odoo_standin",
    "devhost.localazure.frontdoor",
    "devhost.localazure.locks",
]

START_TIMEOUT_S = 30
WORKER_THREADS = 32


class LocalAzure:
    """Local Azure on one machine: ``LocalAzure(state_dir, topology_path).start()``."""

    def __init__(
        self,
        state_dir: Path | str,
        topology_path: Path | str,
        *,
        port: int = 0,
        providers: list[str] | None = None,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.topology_path = Path(topology_path)
        self.port = port
        self.provider_modules = list(PROVIDERS if providers is None else providers)
        self.providers: list[Any] = []
        self.state: LocalAzureState | None = None
        self.certs: CertFiles | None = None
        self.static_token = ""
        self._router = Router()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._pool: ThreadPoolExecutor | None = None
        self._ssl: ssl.SSLContext | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalAzure:
        """Load the topology, serve HTTPS, then create and start every provider."""
        topology = load_topology(self.topology_path)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(self.state_dir.stat().st_mode | 0o011)
        self.certs = ensure_certificates(self.state_dir / "ca")
        self.static_token = self._load_token()
        self.state = LocalAzureState(topology, self.state_dir)
        self._pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="localazure")
        self._router = Router()
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(self.certs.server_cert, self.certs.server_key)

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="localazure-loop")
        self._thread.daemon = True
        self._thread.start()
        self.port = self._call(self._serve_arm(self.port))
        self.base_url = f"https://127.0.0.1:{self.port}"
        log.info("local Azure listening on %s", self.base_url)

        env = ProviderEnv(
            state=self.state,
            base_url=self.base_url,
            state_dir=self.state_dir,
            ca_bundle=self.certs.ca_bundle,
            server_cert=self.certs.server_cert,
            server_key=self.certs.server_key,
            static_token=self.static_token,
            listen=self.listen,
        )
        self._router.add_provider(OperationsProvider())
        try:
            for module_name in self.provider_modules:
                provider = self._create(module_name, env)
                if provider is None:
                    continue
                self.providers.append(provider)
                self._router.add_provider(provider)
            for provider in self.providers:
                if hasattr(provider, "start"):
                    provider.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every provider (their PostgreSQL instances included), then the server."""
        for provider in reversed(self.providers):
            if hasattr(provider, "stop"):
                try:
                    provider.stop()
                except Exception:  # one provider failing to stop must not keep the others up
                    log.exception("provider %s did not stop cleanly", provider.name)
        self.providers.clear()
        if self._loop is not None:
            if self._loop.is_running():
                self._call(self._cleanup())
                self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop.close()
            self._loop = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        log.info("local Azure stopped")

    def __enter__(self) -> LocalAzure:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self) -> dict[str, str]:
        """App settings that point the app at this local Azure (docs/configuration.md)."""
        if self.certs is None:
            raise RuntimeError("local Azure is not started")
        values = {
            "DR_ARM_ENDPOINT": self.base_url,
            "DR_CA_BUNDLE": str(self.certs.ca_bundle),
            "DR_ARM_STATIC_TOKEN": self.static_token,
            "DR_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
            "DR_LOCALAZURE_CONTROL_URL": self.base_url + "/_local",
        }
        for provider in self.providers:
            if hasattr(provider, "settings"):
                values.update(provider.settings())
        return values

    def control(self, method: str, path: str, body: Any = None, timeout_s: float = 60) -> Any:
        """Call the control API (``path`` under ``/_local``); the JSON answer, raising on error."""
        import requests

        response = requests.request(
            method,
            f"{self.base_url}/_local/{path.lstrip('/')}",
            json=body,
            headers={"Authorization": f"Bearer {self.static_token}"},
            verify=str(self.certs.ca_bundle) if self.certs else True,
            timeout=timeout_s,
        )
        if response.status_code >= 400:
            raise RuntimeError(
                f"control {method} {path} answered {response.status_code}: {response.text}"
            )
        return response.json() if response.content else None

    def provider(self, name: str) -> Any:
        """The started provider called ``name`` (for tests and devhost)."""
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(f"no provider {name!r} is running")

    # -- internals ---------------------------------------------------------------------------

    def _create(self, module_name: str, env: ProviderEnv) -> Any:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                log.debug("provider module %s does not exist: skipped", module_name)
                return None
            raise
        return module.create_provider(env)

    def _load_token(self) -> str:
        path = self.state_dir / "arm-token"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(START_TIMEOUT_S)

    async def _serve(self, handler: Any, port: int, tls: bool) -> int:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=self._ssl if tls else None)
        await site.start()
        self._runners.append(runner)
        return runner.addresses[0][1]

    async def _serve_arm(self, port: int) -> int:
        return await self._serve(self._handle_arm, port, tls=True)

    async def _cleanup(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def listen(self, handler: RawHandler, tls: bool = True, port: int = 0) -> str:
        """Serve ``handler`` on one more port; returns ``https://127.0.0.1:PORT`` (or http)."""

        async def handle(request: web.Request) -> web.StreamResponse:
            raw = RawRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=request.headers,
                body=await request.read(),
            )
            loop = asyncio.get_running_loop()
            try:
                answer = await loop.run_in_executor(self._pool, handler, raw)
            except ArmError as exc:
                answer = exc.response()
            except Exception as exc:  # a handler bug answers 500 instead of killing the server
                log.exception("listener handler failed on %s %s", request.method, request.path)
                answer = ArmError(500, "InternalServerError", str(exc)).response()
            return _to_web(answer)

        bound = self._call(self._serve(handle, port, tls))
        return f"{'https' if tls else 'http'}://127.0.0.1:{bound}"

    async def _handle_arm(self, request: web.Request) -> web.StreamResponse:
        assert self.state is not None
        if not _bearer_matches(request.headers, self.static_token):
            return _to_web(
                ArmError(
                    401,
                    "AuthenticationFailed",
                    "local Azure needs 'Authorization: Bearer <DR_ARM_STATIC_TOKEN>'",
                ).response()
            )
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _to_web(
                ArmError(400, "InvalidRequestContent", "the request body is not JSON").response()
            )
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(
                self._pool,
                lambda: dispatch(
                    self._router,
                    self.state,
                    self.base_url,
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers=request.headers,
                    body=body,
                ),
            )
        except ArmError as exc:
            answer = exc.response()
        except Exception as exc:  # a handler bug answers 500 instead of killing the server
            log.exception("handler failed on %s %s", request.method, request.path)
            answer = ArmError(500, "InternalServerError", str(exc)).response()
        log.debug("%s %s -> %s", request.method, request.path, answer.status)
        return _to_web(answer)


def _bearer_matches(headers: Mapping[str, str], token: str) -> bool:
    value = headers.get("Authorization", "")
    scheme, _, presented = value.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(presented.strip(), token)


def _to_web(answer: ArmResponse) -> web.Response:
    headers = {"x-ms-request-id": secrets.token_hex(16), **answer.headers}
    if answer.body is None:
        return web.Response(status=answer.status, headers=headers)
    if isinstance(answer.body, bytes | str):
        return web.Response(status=answer.status, body=answer.body, headers=headers)
    return web.json_response(answer.body, status=answer.status, headers=headers)
