"""PROXY: fal's server proxy and the token route (SPEC §8, issue 20), over real sockets.

The proxy is mounted at /api/fal in aiohttp (``add_subapp``) and in FastAPI (uvicorn,
``app.mount``); fal's hosts are the local gateway (``FAL_RUN_HOST``) or, where a test
needs an upstream that misbehaves, a small fake server.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

import fal_realtime
from fal_realtime.proxy import Proxy, ProxyRequest, loopback_only
from fal_realtime.proxy._rules import Refusal, Upstreams, check_target, forwarded_headers
from fal_realtime.server import RunningGateway

from .child_tools import CHILD_WAIT, interrupt, launch
from .conftest import KEY, MS
from .proxy_tools import FakeUpstream, serve_proxy

WAIT = 10_000 * MS
ADAPTERS = pytest.mark.parametrize("kind", ["aiohttp", "asgi"])
ALLOWED = ["fal-ai/echo", "fal-ai/any-llm", "test/slow"]
ECHO_TARGET = "https://fal.run/fal-ai/echo"
LLM_TARGET = "https://fal.run/fal-ai/any-llm"
TOKENS_TARGET = "https://rest.fal.ai/tokens/"
PROXY_LISTENING = re.compile(r"^fal-realtime proxy listening on (http://127\.0\.0\.1:\d+/api/fal)$")


def allow_all(request: ProxyRequest) -> bool:
    """Accept every request (the tests' authorize)."""
    return True


def refuse_all(request: ProxyRequest) -> bool:
    """Refuse every request."""
    return False


@pytest.fixture
def at_gateway(running: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> RunningGateway:
    """Point fal's hosts at the test gateway, as a developer's environment would."""
    monkeypatch.setenv("FAL_RUN_HOST", running.ws_url)
    monkeypatch.delenv("FAL_REST_URL", raising=False)
    monkeypatch.delenv("FAL_KEY", raising=False)
    return running


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    target: str | None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    sent = dict(headers or {})
    if target is not None:
        sent["x-fal-target-url"] = target
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        sent.setdefault("content-type", "application/json")
    async with asyncio.timeout(WAIT):
        async with http.request(method, f"{url}/proxy", data=data, headers=sent) as resp:
            headers = {k.lower(): v for k, v in resp.headers.items()}
            return resp.status, headers, await resp.read()


async def _through_open_proxy(http: aiohttp.ClientSession, target: str) -> tuple[int, bytes]:
    """POST ``{"a": 1}`` to ``target`` through a proxy that allows every app; return the
    status and body."""
    async with serve_proxy("aiohttp", key=KEY, allowed_apps="*", authorize=allow_all) as url:
        status, _, body = await _post(http, url, target, {"a": 1})
    return status, body


@ADAPTERS
async def test_proxy_1_token_route_gives_a_token_the_gateway_accepts(
    kind: str, at_gateway: RunningGateway, http: aiohttp.ClientSession, issued: list[list[str]]
) -> None:
    """PROXY-1: GET {prefix}/token?app=fal-ai/echo/realtime answers a token and its expiry
    that open a realtime connection (the tokenProvider pattern)."""
    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=allow_all) as url:
        async with http.get(f"{url}/token", params={"app": "fal-ai/echo/realtime"}) as resp:
            assert resp.status == 200
            assert resp.headers["cache-control"] == "no-store"
            answer = await resp.json()
    assert set(answer) == {"token", "expires_at"}
    assert isinstance(answer["expires_at"], int)
    assert issued == [["echo"]]
    results: asyncio.Queue[Any] = asyncio.Queue()
    conn = await fal_realtime.connect(
        "fal-ai/echo",
        on_result=results.put_nowait,
        token_provider=lambda app: str(answer["token"]),
        base_url=at_gateway.ws_url,
    )
    async with conn:
        await conn.send({"prompt": "hi"})
        async with asyncio.timeout(WAIT):
            assert await results.get() == {"echo": {"prompt": "hi"}}


@ADAPTERS
async def test_proxy_2_token_request_through_the_proxy(
    kind: str, at_gateway: RunningGateway, http: aiohttp.ClientSession, issued: list[list[str]]
) -> None:
    """PROXY-2: a POST to rest.fal.ai/tokens/ through {prefix}/proxy gets fal's JSON-string
    token, fetched with the server key (the browser sent none)."""
    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=allow_all) as url:
        status, _, body = await _post(
            http, url, TOKENS_TARGET, {"allowed_apps": ["echo"], "token_expiration": 120}
        )
    assert status == 200, body
    assert isinstance(orjson.loads(body), str)
    assert issued == [["echo"]]


@ADAPTERS
async def test_proxy_3_app_request_is_forwarded_with_the_key(
    kind: str, at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-3: a POST to fal.run/fal-ai/any-llm through the proxy returns the app's JSON."""
    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=allow_all) as url:
        status, headers, body = await _post(
            http, url, LLM_TARGET, {"prompt": "Respond in 5 words."}
        )
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert "x-fal-request-id" in headers
    result = orjson.loads(body)
    assert len(result["output"].split()) == 5


@ADAPTERS
async def test_proxy_4_response_body_streams_chunk_by_chunk(
    kind: str,
    at_gateway: RunningGateway,
    http: aiohttp.ClientSession,
    slow_upstream: asyncio.Event,
) -> None:
    """PROXY-4: the first chunk reaches the browser while the upstream still holds the rest
    (nothing is buffered whole)."""
    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=allow_all) as url:
        headers = {"x-fal-target-url": "https://fal.run/test/slow", "content-type": "x/y"}
        async with asyncio.timeout(WAIT):
            async with http.post(f"{url}/proxy", data=b"{}", headers=headers) as resp:
                assert resp.status == 200
                first = await resp.content.readany()
                assert first == b"first"  # the upstream waits for the release to send more
                slow_upstream.set()
                assert await resp.read() == b"-rest"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/fal-ai/echo",
        "https://fal.run.evil.example/fal-ai/echo",
        "https://evilfal.run/fal-ai/echo",
        "https://api.fal.run/fal-ai/echo",
        "https://FAL.RUN/fal-ai/echo",
        "https://fal.ai/fal-ai/echo",
        "https://rest.fal.ai/users/me",
    ],
)
async def test_proxy_5_other_hosts_are_refused(
    target: str, at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-5: a target on any host other than fal's (or a rest.fal.ai route not served) is
    refused with 400."""
    status, body = await _through_open_proxy(http, target)
    assert status == 400, body
    assert "detail" in orjson.loads(body)


@pytest.mark.parametrize(
    "target",
    ["http://fal.run/fal-ai/echo", "ws://fal.run/fal-ai/echo", "//fal.run/fal-ai/echo", "fal.run"],
)
async def test_proxy_6_plain_http_and_schemeless_targets_are_refused(
    target: str, http: aiohttp.ClientSession, at_gateway: RunningGateway
) -> None:
    """PROXY-6: http://, ws:// and scheme-less targets are refused with 400."""
    status, _ = await _through_open_proxy(http, target)
    assert status == 400


@pytest.mark.parametrize(
    "target",
    [
        "https://127.0.0.1/fal-ai/echo",
        "https://[::1]/fal-ai/echo",
        "https://169.254.169.254/latest/meta-data",
        "https://2130706433/fal-ai/echo",
        "https://0x7f.0.0.1/fal-ai/echo",
    ],
)
async def test_proxy_7_ip_literals_are_refused(
    target: str, http: aiohttp.ClientSession, at_gateway: RunningGateway
) -> None:
    """PROXY-7: IP-literal targets (v4, v6, decimal, hex) are refused with 400."""
    status, _ = await _through_open_proxy(http, target)
    assert status == 400


@pytest.mark.parametrize(
    "target",
    [
        "https://fal.run@evil.example/fal-ai/echo",
        "https://user:pw@fal.run/fal-ai/echo",
        "https://fal.run:443@evil.example/",
        "https://evil.example#@fal.run/fal-ai/echo",
        "https://evil.example?@fal.run/fal-ai/echo",
        "https://fal.run:8443/fal-ai/echo",
        "https://fal.run./fal-ai/echo",
    ],
)
async def test_proxy_8_userinfo_and_authority_tricks_are_refused(
    target: str, http: aiohttp.ClientSession, at_gateway: RunningGateway
) -> None:
    """PROXY-8: userinfo (fal.run@evil), ports, fragments and trailing dots in the authority
    are refused with 400."""
    status, _ = await _through_open_proxy(http, target)
    assert status == 400


@pytest.mark.parametrize(
    "target",
    [
        "https://fal.run/..%2f..%2fevil",
        "https://fal.run/fal-ai/echo/..%2f..%2fother/app",
        "https://fal.run/fal-ai/echo/../../other/app",
        "https://fal.run/fal-ai/./echo",
        "https://fal.run/%2e%2e/fal-ai/echo",
        "https://fal.run//evil.example/x",
        "https://fal.run/fal-ai/echo%00",
        "https://fal.run/fal-ai\\..\\echo",
        "https://rest.fal.ai/tokens/../users",
        "https://rest.fal.ai/storage/upload/initiate?storage_type=other",
    ],
)
async def test_proxy_9_encoded_and_dot_segment_paths_are_refused(
    target: str, http: aiohttp.ClientSession, at_gateway: RunningGateway
) -> None:
    """PROXY-9: encoded, dot-segment, empty-segment and backslash paths are refused with 400."""
    status, _ = await _through_open_proxy(http, target)
    assert status == 400


@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[FakeUpstream, str]]:
    """Serve a server a redirect would lead to; it counts what reaches it."""

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"reached": True})

    upstream = FakeUpstream(ok)
    async with upstream.serve() as url:
        yield upstream, url


async def test_proxy_10_upstream_redirect_is_not_followed(
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    elsewhere: tuple[FakeUpstream, str],
) -> None:
    """PROXY-10: an upstream 302 to another host is answered 502 and never followed."""
    other, other_url = elsewhere

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{other_url}/steal")

    fal = FakeUpstream(redirect)
    async with fal.serve() as fal_url:
        monkeypatch.setenv("FAL_RUN_HOST", fal_url.replace("http://", "ws://"))
        async with serve_proxy("aiohttp", key=KEY, allowed_apps="*", authorize=allow_all) as url:
            status, headers, body = await _post(http, url, ECHO_TARGET, {"a": 1})
    assert status == 502, body
    assert "location" not in {k.lower() for k in headers}
    assert len(fal.seen) == 1  # the proxy asked fal once...
    assert other.seen == []  # ...and had answered before anything reached the other host


async def test_proxy_11_apps_outside_the_list_are_refused(
    at_gateway: RunningGateway, http: aiohttp.ClientSession, issued: list[list[str]]
) -> None:
    """PROXY-11: a token (route or proxied) for an app outside allowed_apps, or a request to
    one, is refused with 403 and nothing is issued."""
    async with serve_proxy("aiohttp", key=KEY, allowed_apps=ALLOWED, authorize=allow_all) as url:
        async with http.get(f"{url}/token", params={"app": "fal-ai/flux/realtime"}) as resp:
            assert resp.status == 403
        body = {"allowed_apps": ["echo", "flux"], "token_expiration": 120}
        status, _, _ = await _post(http, url, TOKENS_TARGET, body)
        assert status == 403
        status, _, _ = await _post(http, url, "https://fal.run/fal-ai/flux", {"a": 1})
        assert status == 403
        status, _, _ = await _post(http, url, "https://queue.fal.run/fal-ai/flux/requests/1", None)
        assert status == 403
        async with http.get(f"{url}/token", params={"app": "not an app"}) as resp:
            assert resp.status == 400
        # The barrier: an allowed token is issued after the refused ones, and it is the only one.
        async with http.get(f"{url}/token", params={"app": "fal-ai/echo"}) as resp:
            assert resp.status == 200
    assert issued == [["echo"]]


@ADAPTERS
async def test_proxy_12_huge_bodies_are_refused_with_413(
    kind: str, at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-12: a body over max_body_bytes is answered 413, with or without a content-length."""
    options: dict[str, Any] = {"key": KEY, "allowed_apps": ALLOWED, "authorize": allow_all}
    async with serve_proxy(kind, max_body_bytes=1024, **options) as url:
        status, _, _ = await _post(http, url, ECHO_TARGET, {"pad": "x" * 4096})
        assert status == 413

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"pad": "'
            for _ in range(64):
                yield b"x" * 256
            yield b'"}'

        headers = {"x-fal-target-url": LLM_TARGET, "content-type": "application/json"}
        async with asyncio.timeout(WAIT):
            async with http.post(f"{url}/proxy", data=chunks(), headers=headers) as resp:
                assert resp.status == 413
        # A body under the limit still goes through.
        status, _, _ = await _post(http, url, LLM_TARGET, {"prompt": "hi"})
        assert status == 200


async def test_proxy_13_header_injection_is_refused(
    at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-13: CR/LF in the target (raw or percent-encoded) or in a forwarded header value
    is refused, never written upstream."""
    async with serve_proxy("aiohttp", key=KEY, allowed_apps="*", authorize=allow_all) as url:
        for target in (
            "https://fal.run/fal-ai/echo%0d%0aX-Injected:%201",
            "https://fal.run/fal-ai/echo?a=1%0d%0aHost:%20evil.example",
        ):
            status, _, _ = await _post(http, url, target, {"a": 1})
            assert status == 400
    for value in ("a\r\nX-Injected: 1", "a\nb", "a\x00b"):
        with pytest.raises(Refusal) as refused:
            forwarded_headers([("x-fal-runner-hint", value)])
        assert refused.value.status == 400
        with pytest.raises(Refusal):
            check_target(f"https://fal.run/fal-ai/{value}", "POST")


@ADAPTERS
async def test_proxy_14_missing_target_and_other_methods(
    kind: str, at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-14: no x-fal-target-url is 400; DELETE/PATCH are 405 with Allow; an unknown
    route under the prefix is 404."""
    async with serve_proxy(kind, key=KEY, allowed_apps="*", authorize=allow_all) as url:
        status, _, body = await _post(http, url, None, {"a": 1})
        assert status == 400
        assert "x-fal-target-url" in orjson.loads(body)["detail"]
        for method in ("DELETE", "PATCH"):
            status, headers, _ = await _post(http, url, ECHO_TARGET, None, method=method)
            assert status == 405
            assert headers["allow"] == "GET, POST, PUT"
        async with http.post(f"{url}/token", params={"app": "fal-ai/echo"}) as resp:
            assert resp.status == 405
        if kind == "asgi":
            async with http.get(f"{url}/other") as resp:
                assert resp.status == 404


@ADAPTERS
async def test_proxy_15_refused_authorize_is_401_and_nothing_is_forwarded(
    kind: str, at_gateway: RunningGateway, http: aiohttp.ClientSession, issued: list[list[str]]
) -> None:
    """PROXY-15: when authorize refuses, /proxy and /token answer 401 and fal sees nothing."""
    seen: list[ProxyRequest] = []

    async def refuse(request: ProxyRequest) -> bool:
        seen.append(request)
        return False

    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=refuse) as url:
        status, _, _ = await _post(
            http, url, TOKENS_TARGET, {"allowed_apps": ["echo"]}, headers={"Cookie": "s=1"}
        )
        assert status == 401
        async with http.get(f"{url}/token", params={"app": "fal-ai/echo"}) as resp:
            assert resp.status == 401
    assert issued == []
    assert [r.route for r in seen] == ["/proxy", "/token"]
    assert seen[0].header("cookie") == "s=1"  # authorize sees the browser's session


async def test_proxy_16_the_key_never_appears_in_answers_or_logs(
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PROXY-16: an upstream that echoes the Authorization header back (body and header)
    and every refusal leave no trace of the key in answers or log lines."""

    async def echo_auth(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        return web.json_response(
            {"detail": f"bad credentials {auth}"}, status=401, headers={"x-echo": auth}
        )

    fal = FakeUpstream(echo_auth)
    caplog.set_level(logging.DEBUG)
    answers: list[bytes] = []
    async with fal.serve() as fal_url:
        monkeypatch.setenv("FAL_RUN_HOST", fal_url.replace("http://", "ws://"))
        monkeypatch.delenv("FAL_REST_URL", raising=False)
        async with serve_proxy(
            "aiohttp", key=KEY, allowed_apps=ALLOWED, authorize=allow_all
        ) as url:
            for target in (ECHO_TARGET, TOKENS_TARGET, "https://evil.example/", None):
                status, headers, body = await _post(http, url, target, {"allowed_apps": ["echo"]})
                answers.append(f"{status} {headers} ".encode() + body)
            async with http.get(f"{url}/token", params={"app": "fal-ai/echo"}) as resp:
                answers.append(f"{resp.status} {dict(resp.headers)} ".encode() + await resp.read())
    assert fal.seen[0]["headers"]["authorization"] == f"Key {KEY}"  # fal did get the key
    assert answers[0].startswith(b"401 ")
    for answer in answers:
        assert KEY.encode() not in answer
        assert b"test-key-secret" not in answer
    assert KEY not in caplog.text
    assert "test-key-secret" not in caplog.text
    proxy = Proxy(key=KEY, allowed_apps=ALLOWED, authorize=allow_all)
    assert KEY not in repr(proxy)


FAL_HOSTS = {"fal.run", "queue.fal.run", "rest.fal.ai"}
_pieces = st.sampled_from(
    [
        "https://", "http://", "HTTPS://", "//", "fal.run", "queue.fal.run", "rest.fal.ai",
        "evil.example", "127.0.0.1", "[::1]", "@", ":", ":443", "/", "//", "..", ".", "%2f",
        "%2e", "%00", "%0d%0a", "\r\n", "\\", "#", "?", "=", "&", "fal-ai", "echo", "tokens",
        "storage", "upload", "initiate", "storage_type=fal-cdn-v3", " ", "\t", "\u3002", "é",
    ]
)  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(_pieces, max_size=12).map("".join)))
def test_proxy_17_hypothesis_target_check_lets_through_only_fal(url: str) -> None:
    """PROXY-17: hypothesis: any target the check accepts is https on one of fal's hosts,
    with plain segments, and is forwarded to that same host."""
    try:
        target = check_target(url, "POST")
    except Refusal as refusal:
        assert refusal.status in (400, 405)
        return
    assert url.startswith("https://")
    assert target.host in FAL_HOSTS
    authority = url[len("https://") :].split("/", 1)[0]
    assert authority == target.host
    assert all(c not in url for c in "@\\%#\r\n\t ")
    segments = target.path.split("/")[1:]
    assert all(seg not in (".", "..") for seg in segments)
    forwarded = Upstreams.from_env({}).url_for(target)
    assert forwarded.startswith(("https://fal.run/", "https://queue.fal.run/", "https://rest."))
    assert forwarded.split("/")[2] == target.host


def test_proxy_18_construction_refuses_open_defaults() -> None:
    """PROXY-18: deny by default: no allowed_apps, no authorize (without the explicit opt-out),
    or no key is a one-line ValueError at construction."""
    with pytest.raises(ValueError, match="allowed_apps") as caught:
        Proxy(key=KEY, authorize=allow_all)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="authorize=.*allow_unauthenticated=True"):
        Proxy(key=KEY, allowed_apps=ALLOWED)
    with pytest.raises(ValueError, match="no fal key"):
        Proxy(allowed_apps=ALLOWED, authorize=allow_all, env={})
    with pytest.raises(ValueError, match="invalid app id"):
        Proxy(key=KEY, allowed_apps=["nope"], authorize=allow_all)
    with pytest.raises(ValueError, match="list of app ids"):
        Proxy(key=KEY, allowed_apps="fal-ai/echo", authorize=allow_all)
    Proxy(key=KEY, allowed_apps=ALLOWED, allow_unauthenticated=True)  # the explicit opt-out


@pytest.mark.parametrize("forward_authorization", [False, True])
async def test_proxy_19_forwarded_and_withheld_headers(
    forward_authorization: bool, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROXY-19: x-fal-*, accept and content-type reach fal; cookies, host, other headers and
    the browser's Authorization do not (unless forward_authorization=True); fal's cookies and
    content-length/encoding do not come back."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.json_response({"ok": True}, headers={"x-fal-request-id": "r1"})
        response.set_cookie("fal_session", "secret")
        return response

    fal = FakeUpstream(answer)
    async with fal.serve() as fal_url:
        monkeypatch.setenv("FAL_RUN_HOST", fal_url.replace("http://", "ws://"))
        async with serve_proxy(
            "aiohttp",
            key=KEY,
            allowed_apps=ALLOWED,
            allow_unauthenticated=True,
            forward_authorization=forward_authorization,
        ) as url:
            status, headers, body = await _post(
                http,
                url,
                "https://fal.run/fal-ai/echo/sub?x=1",
                {"a": 1},
                headers={
                    "Cookie": "session=browser",
                    "Authorization": "Bearer browser-token",
                    "X-Fal-Queue-Priority": "low",
                    "Accept": "text/event-stream",
                    "X-Other": "no",
                    "Referer": "http://page/",
                },
            )
    assert status == 200
    assert orjson.loads(body) == {"ok": True}
    assert headers["x-fal-request-id"] == "r1"
    assert "set-cookie" not in {k.lower() for k in headers}
    (seen,) = fal.seen
    assert seen["path"] == "/fal-ai/echo/sub?x=1"
    sent = seen["headers"]
    assert sent["x-fal-queue-priority"] == "low"
    assert sent["accept"] == "text/event-stream"
    assert sent["content-type"] == "application/json"
    assert "cookie" not in sent and "x-other" not in sent and "referer" not in sent
    assert "x-fal-target-url" not in sent
    assert sent["host"] == fal_url.removeprefix("http://")
    expected = "Bearer browser-token" if forward_authorization else f"Key {KEY}"
    assert sent["authorization"] == expected
    assert orjson.loads(seen["body"]) == {"a": 1}


async def test_proxy_20_fetch_token_is_public_single_flight_and_hides_the_token(
    at_gateway: RunningGateway, issued: list[list[str]]
) -> None:
    """PROXY-20: fal_realtime.fetch_token: concurrent calls share one fetch; the Token's repr
    never shows the token; bad input is a ValueError before any I/O."""
    first, second = await asyncio.gather(
        fal_realtime.fetch_token("fal-ai/echo/realtime", key=KEY),
        fal_realtime.fetch_token("fal-ai/echo", key=KEY),
    )
    assert first == second
    assert issued == [["echo"]]
    assert first.token not in repr(first)
    assert "expires_at" in repr(first)
    with pytest.raises(ValueError, match="invalid app id"):
        await fal_realtime.fetch_token("nope", key=KEY)
    with pytest.raises(ValueError, match="expiration_s"):
        await fal_realtime.fetch_token("fal-ai/echo", key=KEY, expiration_s=0)
    with pytest.raises(fal_realtime.RealtimeError) as caught:
        await fal_realtime.fetch_token("fal-ai/echo", key="wrong:key")
    assert caught.value.code == fal_realtime.UNAUTHORIZED
    assert issued == [["echo"]]


def test_proxy_21_loopback_only_accepts_local_pages_only() -> None:
    """PROXY-21: loopback_only (the CLI's default check) accepts local clients with no Origin
    or a local Origin, and refuses other clients and other sites' pages."""

    def request(client: str | None, origin: str | None) -> ProxyRequest:
        headers = (("origin", origin),) if origin else ()
        return ProxyRequest("POST", "/proxy", headers, {}, client, None)

    assert loopback_only(request("127.0.0.1", None))
    assert loopback_only(request("::1", "http://localhost:5173"))
    assert loopback_only(request("127.0.0.1", "http://127.0.0.1:3000"))
    assert not loopback_only(request("10.0.0.5", None))
    assert not loopback_only(request(None, None))
    assert not loopback_only(request("127.0.0.1", "https://evil.example"))
    assert not loopback_only(request("127.0.0.1", "http://localhost.evil.example"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "pass --allow-app OWNER/ALIAS"),
        (["--allow-app", "nope"], "--allow-app 'nope': expected OWNER/ALIAS"),
        (["--allow-app", "a/b", "--port", "70000"], "--port must be in 0..65535"),
        (["--allow-app", "a/$b"], "--allow-app: invalid app id 'a/$b'"),
        (["--allow-app", "a/b", "--key-missing"], "no fal key found: set FAL_KEY"),
    ],
)
def test_proxy_22_cli_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PROXY-22: `fal-realtime proxy` with bad options, or without a key, prints one error
    line and exits with status 2."""
    from fal_realtime.cli import main

    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    if "--key-missing" in argv:
        argv = argv[:-1]
    else:
        monkeypatch.setenv("FAL_KEY", KEY)

    assert main(["proxy", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"fal-realtime: error: {message}")


async def test_proxy_23_cli_serves_proxy_and_token_routes(
    at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-23: `fal-realtime proxy --port 0 --allow-app fal-ai/echo` serves /api/fal/token
    and /api/fal/proxy for local pages, refuses other sites' pages, and stops on Ctrl-C."""
    proc, lines = await launch(
        "proxy",
        "--port",
        "0",
        "--allow-app",
        "fal-ai/echo",
        until="fal-realtime proxy listening on ",
        env={"FAL_KEY": KEY, "FAL_RUN_HOST": at_gateway.ws_url},
    )
    try:
        async with asyncio.timeout(CHILD_WAIT):
            match = PROXY_LISTENING.match(lines[0])
            assert match, lines
            url = match.group(1)
            async with http.get(f"{url}/token", params={"app": "fal-ai/echo"}) as resp:
                assert resp.status == 200
                assert set(await resp.json()) == {"token", "expires_at"}
            evil = {"Origin": "https://evil.example"}
            async with http.get(
                f"{url}/token", params={"app": "fal-ai/echo"}, headers=evil
            ) as resp:
                assert resp.status == 401
            status, _, body = await _post(http, url, ECHO_TARGET, {"a": 1})
            assert status == 200, body
            assert orjson.loads(body) == {"echo": {"a": 1}}
            status, _, _ = await _post(http, url, "https://fal.run/fal-ai/any-llm", {"a": 1})
            assert status == 403
    finally:
        code, out, err = await interrupt(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert KEY not in "\n".join(lines) + out + err
    assert out.rstrip().endswith("proxy stopped")


async def test_proxy_24_a_session_of_yours_is_used_and_left_open(
    at_gateway: RunningGateway,
) -> None:
    """PROXY-24: with session=..., requests and token fetches go through that session, and
    the proxy never closes it."""
    started: list[str] = []

    async def on_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        started.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as mine:
        options: dict[str, Any] = {"key": KEY, "allowed_apps": ALLOWED, "authorize": allow_all}
        async with serve_proxy("aiohttp", session=mine, **options) as url:
            async with aiohttp.ClientSession() as browser:
                status, _, _ = await _post(browser, url, LLM_TARGET, {"prompt": "hi"})
                assert status == 200
                async with browser.get(f"{url}/token", params={"app": "fal-ai/echo"}) as resp:
                    assert resp.status == 200
        assert not mine.closed
    assert started == ["/fal-ai/any-llm", "/tokens/"]


@ADAPTERS
async def test_proxy_25_failing_authorize_and_repeated_targets(
    kind: str,
    at_gateway: RunningGateway,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PROXY-25: an authorize that raises is a 500 with a one-line detail (logged, never
    forwarded); two x-fal-target-url headers are a 400."""

    def broken(request: ProxyRequest) -> bool:
        raise RuntimeError("session store down")

    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=broken) as url:
        status, _, body = await _post(http, url, LLM_TARGET, {"prompt": "hi"})
        assert status == 500
        assert orjson.loads(body) == {"detail": "the proxy's authorize check failed"}
    assert "session store down" in caplog.text
    async with serve_proxy(kind, key=KEY, allowed_apps=ALLOWED, authorize=allow_all) as url:
        headers = [("x-fal-target-url", LLM_TARGET), ("x-fal-target-url", "https://evil.example/")]
        async with http.post(f"{url}/proxy", data=b"{}", headers=CIMultiDict(headers)) as resp:
            assert resp.status == 400


async def test_proxy_26_gateway_plain_posts_need_credentials(
    at_gateway: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """PROXY-26: the gateway's plain POST to an HTTP app (what the proxy forwards to, as
    fal.run) needs a key or a token, answers 404 for an unknown app, and the proxy passes
    those answers back as they are."""
    base = at_gateway.url
    async with http.post(f"{base}/fal-ai/any-llm", json={"prompt": "hi"}) as resp:
        assert resp.status == 401
    headers = {"Authorization": f"Key {KEY}"}
    async with http.post(f"{base}/fal-ai/nope", json={}, headers=headers) as resp:
        assert resp.status == 404
    async with http.post(f"{base}/fal-ai/any-llm", json={"prompt": "hi"}, headers=headers) as r:
        assert r.status == 200
        assert r.headers["x-fal-request-id"]
    async with serve_proxy("aiohttp", key=KEY, allowed_apps="*", authorize=allow_all) as url:
        status, _, body = await _post(http, url, "https://fal.run/fal-ai/nope", {"a": 1})
    assert status == 404
    assert "no HTTP app" in orjson.loads(body)["detail"]
