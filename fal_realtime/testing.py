"""Test an app built on fal realtime against a local gateway: no network, no fal key, no GPU.

With pytest, take the ``fal_gateway`` fixture (this package's pytest plugin); with any
other runner, use :class:`LocalGateway` as a context manager, sync or async::

    async with LocalGateway() as gateway:        # or: with LocalGateway() as gateway:
        gateway.replay("fal-ai/flux-lora-realtime", "tests/data/flux.jsonl", speed=0)
        conn = await fal_realtime.connect("fal-ai/flux-lora-realtime", on_result=print)

While it runs, ``FAL_RUN_HOST``, ``FAL_WS_RUN_HOST``, ``FAL_REST_URL`` and ``FAL_KEY`` point
at it (``FAL_KEY_ID``/``FAL_KEY_SECRET`` are unset), so unmodified application code reaches
it; the previous values come back when it stops.

Why the gateway runs on its own event loop in a thread: a test's loop is not the
fixture's to choose. Sync tests have none (and FastAPI's TestClient runs the app on a
loop of its own in another thread); pytest-asyncio gives each test a loop whose scope
(function, module, session) and mode (strict, auto) the project picks, and an async
fixture tied to one loop breaks tests on another. A gateway on a private loop is
reachable from any of them over 127.0.0.1, keeps answering while the test blocks, and
needs no async fixture at all. The cost: handlers you register (``realtime``,
``http_app``) run on the gateway's loop, so share only thread-safe objects with the test
(a ``threading.Event``, a ``queue.Queue``, plain data), not an ``asyncio.Event``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .realtime import Connecting, connect
from .server import Faults, Gateway
from .server.registry import HttpHandler

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["ENV_NAMES", "LocalGateway", "connect_with_query"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: The environment variables a running LocalGateway sets (or unsets) and restores.
ENV_NAMES = (
    "FAL_RUN_HOST",
    "FAL_WS_RUN_HOST",
    "FAL_REST_URL",
    "FAL_KEY",
    "FAL_KEY_ID",
    "FAL_KEY_SECRET",
)
#: How long starting or stopping the gateway thread may take.
THREAD_WAIT_S = 30.0


class LocalGateway:
    """A gateway with the demo apps on 127.0.0.1 (a free port), on its own loop in a thread."""

    def __init__(self, *, demo: bool = True, set_env: bool = True, host: str = "127.0.0.1") -> None:
        """Prepare a gateway; :meth:`start` (or ``with``/``async with``) runs it.

        Args:
            demo: host the demo apps (``fal-ai/echo``, ``fal-ai/any-llm``, ...).
            set_env: point ``FAL_RUN_HOST`` and friends at it while it runs.
            host: the address to listen on.
        """
        #: The key the gateway accepts (random; never a real fal key).
        self.key = f"test-{secrets.token_hex(4)}:{secrets.token_hex(16)}"
        self.host = host
        self.port = 0
        self._demo = demo
        self._set_env = set_env
        self._saved_env: dict[str, str | None] = {}
        self._gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<LocalGateway {self.base_url if self.port else 'not running'}>"

    # -- where it is --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Return ``ws://host:port``: what ``base_url=`` (or ``FAL_RUN_HOST``) takes."""
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """Return ``http://host:port`` (the token endpoint is ``/tokens/`` under it)."""
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Return the environment variables that point a client here."""
        return {
            "FAL_RUN_HOST": self.base_url,
            "FAL_WS_RUN_HOST": self.base_url,
            "FAL_REST_URL": self.http_url,
            "FAL_KEY": self.key,
        }

    # -- life -----------------------------------------------------------------------------

    def start(self) -> LocalGateway:
        """Start the gateway thread and wait until it listens; set the environment."""
        if self._thread is not None:
            raise RuntimeError("this LocalGateway is already running: stop() it first")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fal-realtime-gateway", daemon=True
        )
        self._thread.start()
        try:
            ready.result(THREAD_WAIT_S)
        except BaseException:
            self._join()
            raise
        if self._set_env:
            self._saved_env = {name: os.environ.get(name) for name in ENV_NAMES}
            for name in ("FAL_KEY_ID", "FAL_KEY_SECRET"):
                os.environ.pop(name, None)
            os.environ.update(self.env)
        return self

    def stop(self) -> None:
        """Stop the gateway (closing its sockets) and restore the environment."""
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(THREAD_WAIT_S)
        self._thread = self._loop = self._stopping = self._gateway = None
        self.port = 0

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # reported to start(): nothing escapes the thread
            if not ready.done():
                ready.set_exception(exc)

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        gateway = Gateway(keys=[self.key])
        if self._demo:
            from .server.demo import register_demo_apps

            register_demo_apps(gateway)
        running = await gateway.start(self.host, 0)
        self._gateway, self.port = gateway, running.port
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        ready.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            await running.stop()

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalGateway:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what it hosts (the Gateway's API, called on the gateway's loop) -------------------

    def _call(self, func: Callable[[Gateway], T]) -> T:
        """Run ``func(gateway)`` on the gateway's loop and return what it returns."""
        gateway, loop = self._gateway, self._loop
        if gateway is None or loop is None:
            raise RuntimeError("the LocalGateway is not running: use it inside with/async with")
        if threading.current_thread() is self._thread:
            return func(gateway)
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(func(gateway))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return done.result(THREAD_WAIT_S)

    @property
    def gateway(self) -> Gateway:
        """Return the running :class:`~fal_realtime.server.Gateway` (mutate it via this class)."""
        return self._call(lambda gateway: gateway)

    def realtime(self, app_id: str, **options: Any) -> Callable[[F], F]:
        """Register the decorated function as a realtime app (``Gateway.realtime``'s options)."""

        def decorate(func: F) -> F:
            self._call(lambda gateway: gateway.add_realtime(app_id, func, **options))
            return func

        return decorate

    def http_app(
        self, app_id: str, *, upstream: str | web.Application | HttpHandler, **options: Any
    ) -> None:
        """Front an HTTP app (a URL, an aiohttp app or handler) over HTTP-over-WebSockets."""
        self._call(lambda gateway: gateway.http_app(app_id, upstream=upstream, **options))

    def set_faults(self, app_id: str, faults: Faults | str | None) -> None:
        """Inject faults into every new connection to ``app_id`` (e.g. ``"drop_after=2"``)."""
        self._call(lambda gateway: gateway.set_faults(app_id, faults))

    def replay(
        self,
        app_id: str,
        recording: str | os.PathLike[str],
        *,
        path: str | None = None,
        speed: float = 1.0,
        strict: bool = False,
    ) -> None:
        """Serve a recording as ``app_id`` (see :meth:`fal_realtime.server.Gateway.replay`)."""
        self._call(
            lambda gateway: gateway.replay(app_id, recording, path=path, speed=speed, strict=strict)
        )


def connect_with_query(app: str, query: Mapping[str, str], **options: Any) -> Connecting:
    """Return ``fal_realtime.connect(app, **options)`` with ``query`` on every socket's URL.

    A testing hook, kept off ``connect()``: the local gateway reads per-connection faults
    from the query, e.g. ``connect_with_query(app, {"fal_faults": "refuse_auth=1"}, ...)``
    (see :mod:`fal_realtime.server.faults`). Await it or use it with ``async with``, as
    ``connect()``.

    Args:
        app: the app id, as for ``connect()``.
        query: the query parameters to add to the URL.
        options: ``connect()``'s keyword arguments.
    """
    if not isinstance(query, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in query.items()
    ):
        raise TypeError(f"query must be a map of str to str, not {query!r}")
    connecting = connect(app, **options)
    connecting._options = connecting._options.with_query(query)
    return connecting
