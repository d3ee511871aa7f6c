"""RT-AUTH: how the realtime client authenticates, over real sockets (SPEC §2.1 auth, §3, §4, §6).

A spy on the gateway records every HTTP request it receives (method, scheme, path, query,
``Authorization``) and every token its issuer signs, so the tests count token fetches and
handshakes on the server side instead of mocking the client's sockets.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

import fal_realtime
from fal_realtime import (
    CONNECTION_LOST,
    INVALID_INPUT,
    UNAUTHORIZED,
    ConnectionState,
    RealtimeConnection,
    RealtimeError,
    ReconnectPolicy,
    UnauthorizedError,
)
from fal_realtime._auth import TokenSource
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.demo import echo_realtime, register_demo_apps
from fal_realtime.testing import connect_with_query

from .callbacks import Recorder
from .conftest import KEY, MS
from .gateway_tools import WAIT, eventually, on_io_alone

ECHO = "fal-ai/echo"
ECHO_PATH = "/fal-ai/echo/realtime"
KEY_ENV = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")


# -- the gateway-side spy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One HTTP request as the gateway received it."""

    method: str
    scheme: str
    path: str
    query: dict[str, str]
    authorization: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class Issued:
    """One token the gateway's issuer signed."""

    apps: list[str]
    lifetime_s: float
    token: str
    at: float  # time.monotonic()


@dataclass(slots=True)
class Spy:
    """What the gateway saw: requests and issued tokens."""

    requests: list[Hit] = field(default_factory=list)
    issued: list[Issued] = field(default_factory=list)

    def token_posts(self) -> list[Hit]:
        return [h for h in self.requests if h.method == "POST" and h.path.startswith("/tokens")]

    def handshakes(self, path: str = ECHO_PATH) -> list[Hit]:
        return [h for h in self.requests if h.method == "GET" and h.path == path]

    def tokens(self) -> list[str]:
        return [i.token for i in self.issued]


def install_spy(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Record ``gateway``'s requests and issued tokens (install before it serves)."""
    spy = Spy()
    issue = gateway.tokens.issue

    def recording_issue(allowed_apps: Sequence[str], lifetime_s: float, *, subject: str) -> str:
        token = issue(allowed_apps, lifetime_s, subject=subject)
        spy.issued.append(Issued(list(allowed_apps), lifetime_s, token, time.monotonic()))
        return token

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        spy.requests.append(
            Hit(
                request.method,
                request.scheme,
                request.path,
                dict(request.query),
                request.headers.get("Authorization"),
            )
        )
        return await handler(request)

    make_app = gateway.make_app

    def make_app_with_spy() -> web.Application:
        app = make_app()
        app.middlewares.append(record)
        return app

    monkeypatch.setattr(gateway.tokens, "issue", recording_issue)
    monkeypatch.setattr(gateway, "make_app", make_app_with_spy)
    return spy


@pytest.fixture
def spy(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Spy on the conftest gateway."""
    return install_spy(gateway, monkeypatch)


@pytest.fixture
async def running(gateway: Gateway, spy: Spy) -> AsyncIterator[RunningGateway]:
    """Serve the conftest gateway, with the spy in place before it starts."""
    async with gateway.serve(port=0) as served:
        yield served


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every fal key variable from the environment."""
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)


# -- the client side -------------------------------------------------------------------------


async def open_echo(
    running: RunningGateway, seen: Recorder, app: str = ECHO, **kwargs: Any
) -> RealtimeConnection:
    """Connect to ``app`` on ``running`` with KEY unless ``kwargs`` say otherwise."""
    kwargs.setdefault("key", KEY)
    options = {"base_url": running.ws_url, **seen.hooks(), **kwargs}
    async with asyncio.timeout(WAIT):
        if (query := options.pop("query", None)) is not None:  # the gateway's fault flags
            return await connect_with_query(app, query, **options)
        return await fal_realtime.connect(app, **options)


async def assert_echoes(conn: RealtimeConnection, seen: Recorder, payload: dict[str, Any]) -> None:
    await conn.send(payload)
    assert await seen.next_result() == {"echo": payload}


def secrets_in(text: str, secrets: Sequence[str]) -> list[str]:
    """Return the secrets (or a redacted hint of them) that occur in ``text``."""
    return [f"{s[:6]}...({len(s)} chars)" for s in secrets if s and s in text]


def error_text(error: BaseException) -> str:
    """Return everything an error shows: str, repr, its traceback and its body."""
    body = getattr(error, "body", None)
    return "\n".join(
        [str(error), repr(error), "".join(traceback.format_exception(error)), repr(body)]
    )


def key_gateway(*keys: str, **options: Any) -> Gateway:
    """Return a gateway accepting ``keys`` with the demo apps."""
    gateway = Gateway(keys=list(keys), heartbeat_s=None, **options)
    register_demo_apps(gateway)
    return gateway


# -- RT-AUTH ---------------------------------------------------------------------------------


async def test_rt_auth_1_jwt_fetched_from_gateway_tokens(running: RunningGateway, spy: Spy) -> None:
    """RT-AUTH-1: by default a token for `echo` is fetched over http:// and sent in the URL."""
    seen = Recorder()
    conn = await open_echo(running, seen)
    try:
        await assert_echoes(conn, seen, {"prompt": "hi"})
    finally:
        await conn.close()
    [post] = spy.token_posts()
    assert (post.scheme, post.path, post.authorization) == ("http", "/tokens/", f"Key {KEY}")
    [issued] = spy.issued
    assert issued.apps == ["echo"] and issued.lifetime_s == 120
    [handshake] = spy.handshakes()
    # Latest wins at the server too: the default asks it to keep the newest input only.
    assert handshake.query == {"fal_jwt_token": issued.token, "max_buffering": "1"}
    assert handshake.authorization is None
    assert seen.errors == []


async def test_rt_auth_2_key_header_without_jwt(running: RunningGateway, spy: Spy) -> None:
    """RT-AUTH-2: use_jwt=False sends `Authorization: Key` on the handshake; no token is issued."""
    seen = Recorder()
    conn = await open_echo(running, seen, use_jwt=False)
    try:
        await assert_echoes(conn, seen, {"n": 1})
    finally:
        await conn.close()
    assert spy.token_posts() == [] and spy.issued == []
    [handshake] = spy.handshakes()
    assert handshake.authorization == f"Key {KEY}"
    assert "fal_jwt_token" not in handshake.query
    assert seen.errors == []


@pytest.mark.parametrize("use_jwt", [True, False], ids=["jwt", "key_header"])
@pytest.mark.parametrize(
    ("key", "env"),
    [
        ("id:secret", {"FAL_KEY": "wrong", "FAL_KEY_ID": "wrong", "FAL_KEY_SECRET": "wrong"}),
        (None, {"FAL_KEY": "id:secret", "FAL_KEY_ID": "wrong", "FAL_KEY_SECRET": "wrong"}),
        (None, {"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret"}),
    ],
    ids=["key_argument_wins", "env_fal_key", "env_key_id_and_secret"],
)
async def test_rt_auth_3_key_resolution_order(
    monkeypatch: pytest.MonkeyPatch,
    no_key_env: None,
    key: str | None,
    env: dict[str, str],
    use_jwt: bool,
) -> None:
    """RT-AUTH-3: key= wins, else FAL_KEY, else FAL_KEY_ID:FAL_KEY_SECRET."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    gateway = key_gateway("id:secret")
    spy = install_spy(gateway, monkeypatch)
    seen = Recorder()
    async with gateway.serve(port=0) as running:
        conn = await open_echo(running, seen, key=key, use_jwt=use_jwt)
        try:
            await assert_echoes(conn, seen, {"n": 3})
        finally:
            await conn.close()
    presented = spy.token_posts() if use_jwt else spy.handshakes()
    assert [h.authorization for h in presented] == ["Key id:secret"]
    assert seen.errors == []


@pytest.mark.parametrize("use_jwt", [True, False], ids=["jwt", "key_header"])
@pytest.mark.parametrize(
    "env",
    [{}, {"FAL_KEY": ""}, {"FAL_KEY_ID": "id"}, {"FAL_KEY_SECRET": "secret"}],
    ids=["nothing", "empty_fal_key", "id_only", "secret_only"],
)
async def test_rt_auth_4_missing_key_raises_before_io(
    monkeypatch: pytest.MonkeyPatch,
    no_key_env: None,
    running: RunningGateway,
    spy: Spy,
    env: dict[str, str],
    use_jwt: bool,
) -> None:
    """RT-AUTH-4: without any key connect() raises UNAUTHORIZED naming the variables, no I/O."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen = Recorder()
    with pytest.raises(UnauthorizedError) as caught:
        await open_echo(running, seen, key=None, use_jwt=use_jwt)
    error = caught.value
    assert isinstance(error, RealtimeError) and error.code == UNAUTHORIZED
    assert re.search(r"\bFAL_KEY\b", str(error))
    assert "FAL_KEY_ID" in str(error) and "FAL_KEY_SECRET" in str(error)
    assert spy.requests == []
    assert seen.states == [] and seen.opens == 0


async def test_rt_auth_5_bad_key_fails_fast_on_token_401(running: RunningGateway, spy: Spy) -> None:
    """RT-AUTH-5: a refused key (token 401) fails connect() at once: one POST, no socket."""
    seen = Recorder()
    with pytest.raises(UnauthorizedError) as caught:
        # At once: on I/O alone, no backoff or other timer waited out.
        await on_io_alone(open_echo(running, seen, key="bad-id:bad-secret"))
    error = caught.value
    assert error.code == UNAUTHORIZED and error.status == 401
    assert len(spy.token_posts()) == 1, "a refused key must not be retried"
    assert spy.handshakes() == [] and spy.issued == []
    assert seen.states[-1] is ConnectionState.FAILED


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_rt_auth_6_token_provider_replaces_fetch(
    running: RunningGateway, gateway: Gateway, spy: Spy, no_key_env: None, flavour: str
) -> None:
    """RT-AUTH-6: a sync or async token_provider(app) gives the token; nothing is fetched."""
    token = gateway.tokens.issue(["echo"], 60, subject="p")
    asked: list[Any] = []

    def provide(app: str) -> str:
        asked.append(app)
        return token

    async def provide_async(app: str) -> str:
        await asyncio.sleep(0)
        return provide(app)

    provider = provide if flavour == "sync" else provide_async
    seen = Recorder()
    # No key anywhere: the provider alone is enough.
    conn = await open_echo(running, seen, key=None, token_provider=provider)
    try:
        await assert_echoes(conn, seen, {"via": flavour})
    finally:
        await conn.close()
    assert asked == [ECHO] and all(type(a) is str for a in asked)
    assert spy.token_posts() == []
    [handshake] = spy.handshakes()
    assert handshake.query == {"fal_jwt_token": token, "max_buffering": "1"}
    assert seen.errors == []


async def test_rt_auth_7_concurrent_connects_share_one_token_fetch(
    running: RunningGateway, spy: Spy
) -> None:
    """RT-AUTH-7: 20 connections opened at once to one app cause exactly one token fetch."""
    seens = [Recorder() for _ in range(20)]
    async with asyncio.timeout(WAIT):
        outcomes = await asyncio.gather(
            *(
                fal_realtime.connect(ECHO, base_url=running.ws_url, key=KEY, **seen.hooks())
                for seen in seens
            ),
            return_exceptions=True,
        )
    conns = [c for c in outcomes if isinstance(c, RealtimeConnection)]
    try:
        assert len(conns) == 20, [o for o in outcomes if not isinstance(o, RealtimeConnection)]
        for i, conn in enumerate(conns):
            await conn.send({"i": i})
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(*(seen.next_result() for seen in seens))
        assert results == [{"echo": {"i": i}} for i in range(20)]
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    assert len(spy.token_posts()) == 1 and len(spy.issued) == 1
    handshakes = spy.handshakes()
    assert len(handshakes) == 20
    assert {h.query["fal_jwt_token"] for h in handshakes} == {spy.issued[0].token}
    assert all(seen.errors == [] for seen in seens)


async def test_rt_auth_7_refresh_is_shared_by_open_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RT-AUTH-7: 20 open connections refreshing a 1 s token at 90% fetch it once between them."""
    gateway = key_gateway(KEY, max_token_lifetime_s=1)
    spy = install_spy(gateway, monkeypatch)
    seens = [Recorder() for _ in range(20)]
    async with gateway.serve(port=0) as running:
        async with asyncio.timeout(WAIT):
            outcomes = await asyncio.gather(
                *(open_echo(running, seen) for seen in seens), return_exceptions=True
            )
        conns = [c for c in outcomes if isinstance(c, RealtimeConnection)]
        try:
            assert len(conns) == 20, [o for o in outcomes if not isinstance(o, RealtimeConnection)]
            # Every connection's refresher wakes at 0.9 s of the token's 1 s: one of them
            # fetches, the other 19 wait for that fetch (the next refresh is due at 1.8 s).
            await eventually(lambda: len(spy.issued) >= 2)
            assert len(spy.token_posts()) == 2
            assert all(conn.state is ConnectionState.OPEN for conn in conns)
        finally:
            await asyncio.gather(*(conn.close() for conn in conns))
    assert len(spy.token_posts()) == 2 and len(spy.issued) == 2
    assert all(seen.errors == [] for seen in seens)


async def test_rt_auth_8_unauthorized_once_refetches_and_reconnects(
    running: RunningGateway, gateway: Gateway, spy: Spy, instant_retries: None
) -> None:
    """RT-AUTH-8: one refusal drops the token, fetches a new one and reconnects; no error."""
    gateway.set_faults(ECHO, "refuse_auth=1;connections=1")
    seen = Recorder()
    conn = await open_echo(running, seen)
    try:
        await eventually(lambda: len(spy.handshakes()) == 2 and conn.state is ConnectionState.OPEN)
        await assert_echoes(conn, seen, {"after": "refusal"})
        assert conn.state is ConnectionState.OPEN
    finally:
        await conn.close()
    assert len(spy.token_posts()) == 2 and len(spy.issued) == 2
    first, second = spy.handshakes()
    assert first.query["fal_jwt_token"] == spy.issued[0].token
    assert second.query["fal_jwt_token"] == spy.issued[1].token
    assert not [e for e in seen.errors if e.code == UNAUTHORIZED], seen.errors
    assert seen.errors == []


async def test_rt_auth_9_unauthorized_twice_is_final(
    running: RunningGateway, gateway: Gateway, spy: Spy, instant_retries: None
) -> None:
    """RT-AUTH-9: refused twice in a row, connect() raises UNAUTHORIZED after exactly 2 attempts."""
    gateway.set_faults(ECHO, "refuse_auth=1")
    seen = Recorder()
    try:
        conn = await open_echo(running, seen)
    except UnauthorizedError as exc:
        error: RealtimeError = exc
    else:
        # Settle and release the connection before reporting what went wrong.
        try:
            await eventually(lambda: conn.closed)
        finally:
            await conn.close()
        pytest.fail(
            f"connect() returned a connection the server refused (state {conn.state.value}, "
            f"{len(spy.handshakes())} handshakes, errors {seen.errors!r})"
        )
    assert error.code == UNAUTHORIZED
    assert seen.states[-1] is ConnectionState.FAILED
    assert len(spy.handshakes()) == 2, "a second refusal in a row must be final"
    assert len(spy.token_posts()) == 2


async def test_rt_auth_9_unauthorized_twice_is_final_lazy(
    running: RunningGateway, gateway: Gateway, spy: Spy, instant_retries: None
) -> None:
    """RT-AUTH-9: (lazy) refused twice in a row, the connection fails UNAUTHORIZED, 2 attempts."""
    gateway.set_faults(ECHO, "refuse_auth=1")
    seen = Recorder()
    conn = await open_echo(running, seen, lazy=True)
    try:
        await conn.send({"n": 1})
        await eventually(lambda: conn.state is ConnectionState.FAILED)
        with pytest.raises(UnauthorizedError):
            await conn.send({"n": 2})
    finally:
        # The barrier: close() awaits every task the connection owned, so once it returns
        # no attempt is on its way or can start: the counts below are final.
        await conn.close()
    assert conn.state is ConnectionState.FAILED
    assert [e.code for e in seen.errors] == [UNAUTHORIZED]
    assert len(spy.handshakes()) == 2, "a second refusal in a row must be final"
    assert len(spy.token_posts()) == 2


@pytest.mark.parametrize(
    ("session_timeout_ms", "how"),
    [(200, "refetched"), (1200, "refreshed_ahead")],
)
async def test_rt_auth_10_expired_token_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, session_timeout_ms: int, how: str
) -> None:
    """RT-AUTH-10: after the first 1 s token expired, the lazy reconnect uses a valid one."""
    gateway = Gateway(keys=[KEY], heartbeat_s=None, max_token_lifetime_s=1)
    gateway.add_realtime("test/brief", echo_realtime, session_timeout=session_timeout_ms * MS)
    spy = install_spy(gateway, monkeypatch)
    path = "/test/brief/realtime"
    seen = Recorder()
    async with gateway.serve(port=0) as running:
        conn = await open_echo(running, seen, app="test/brief")
        try:
            opened_at = time.monotonic()
            await assert_echoes(conn, seen, {"n": 1})
            # Idle past the session timeout: TIMEOUT then close 1000, no error.
            await eventually(lambda: conn.state is ConnectionState.DORMANT)
            await asyncio.sleep(max(0.0, opened_at + 1500 * MS - time.monotonic()))
            assert time.monotonic() - spy.issued[0].at > 1000 * MS  # the first token has expired
            sent_again_at = time.monotonic()
            await assert_echoes(conn, seen, {"n": 2})
        finally:
            await conn.close()
    assert seen.errors == []
    assert len(spy.issued) >= 2
    first, second = spy.handshakes(path)
    assert first.query["fal_jwt_token"] == spy.issued[0].token
    assert second.query["fal_jwt_token"] == spy.issued[-1].token != spy.issued[0].token
    if how == "refreshed_ahead":
        # The session outlived 90% of the token's life: the refresher had a new one ready.
        assert spy.issued[1].at < sent_again_at
    else:
        # No session was open at 90%: the reconnect fetched a fresh token itself.
        assert spy.issued[1].at >= sent_again_at


async def test_rt_auth_11_no_secrets_in_repr_or_logs(
    running: RunningGateway,
    gateway: Gateway,
    spy: Spy,
    instant_retries: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RT-AUTH-11: the key and tokens never appear in repr(conn), stats, errors or DEBUG logs."""
    # One refusal makes the client log its retry and handle two tokens.
    gateway.set_faults(ECHO, "refuse_auth=1;connections=1")
    seen = Recorder()
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        conn = await open_echo(running, seen)
        try:
            shown += [repr(conn), str(conn)]
            await eventually(lambda: len(spy.handshakes()) == 2 and conn.state.value == "open")
            await assert_echoes(conn, seen, {"n": 11})
            shown += [repr(conn), str(conn), repr(conn.stats)]
        finally:
            await conn.close()
        shown += [repr(conn), str(conn)]
    shown += [error_text(e) for e in seen.errors]
    shown += [f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records]
    shown.append(caplog.text)
    assert any(r.name.startswith("fal_realtime") for r in caplog.records), "nothing was logged"
    secrets = [KEY, KEY.split(":")[1], *spy.tokens()]
    assert len(spy.tokens()) == 2
    assert secrets_in("\n".join(shown), secrets) == []


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"key": "bad-id:bad-secret-value"}, UNAUTHORIZED),
        ({"query": {"fal_faults": "refuse_auth=1"}}, UNAUTHORIZED),
        ({"query": {"fal_faults": "refuse_auth=1"}, "use_jwt": False}, UNAUTHORIZED),
        ({"query": {"fal_faults": "reject_status=400"}}, INVALID_INPUT),
        (
            {"query": {"fal_faults": "reject_status=503"}, "reconnect": ReconnectPolicy(2)},
            CONNECTION_LOST,
        ),
    ],
    ids=["bad_key_401", "token_refused", "key_refused", "handshake_400", "handshake_503"],
)
async def test_rt_auth_11_no_secrets_in_errors(
    running: RunningGateway,
    spy: Spy,
    instant_retries: None,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    code: str,
) -> None:
    """RT-AUTH-11: errors raised or reported, and the logs, never show the key or the token."""
    seen = Recorder()
    errors: list[RealtimeError] = []
    with caplog.at_level(logging.DEBUG):
        try:
            conn = await open_echo(running, seen, **options)
        except RealtimeError as exc:
            errors.append(exc)
        else:
            try:
                await eventually(lambda: conn.closed)
            finally:
                await conn.close()
    errors += seen.errors
    assert errors and {e.code for e in errors} == {code}, errors
    shown = [error_text(e) for e in errors]
    shown += [f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records]
    shown.append(caplog.text)
    used_key = options.get("key", KEY)
    secrets = [used_key, used_key.split(":")[1], *spy.tokens()]
    assert secrets_in("\n".join(shown), secrets) == []


async def test_rt_auth_12_clock_skew_causes_no_token_fetch_storm(
    running: RunningGateway, gateway: Gateway, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RT-AUTH-12: a token whose exp looks past (issuer clock behind) is not refetched in a loop."""
    # The issuer's clock (private: TokenIssuer takes no clock after construction) runs 1000 s
    # behind the client's: its tokens are valid for the gateway, expired by the client's clock.
    monkeypatch.setattr(gateway.tokens, "_clock", lambda: time.time() - 1000)
    seen = Recorder()
    conn = await open_echo(running, seen)
    try:
        await assert_echoes(conn, seen, {"n": 12})
        # The token the connection holds (the loop's shared cache, read through a source
        # made alike) is due for refresh at 90% of the lifetime asked for: no refetch is
        # scheduled soon, so no storm can start; no sleep needed to watch for one.
        alike = TokenSource(
            app_alias="echo",
            app_id=ECHO,
            token_url=f"{running.url}/tokens/",
            key=KEY,
            token_provider=None,
            token_expiration_s=120,
        )
        due = alike.refresh_due_in()
        assert due is not None and due > 100, due
    finally:
        await conn.close()  # awaits the refresher too: the count below is final
    assert len(spy.token_posts()) == 1
    assert seen.errors == []
