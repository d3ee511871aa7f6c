"""GW-TOK: the gateway's token endpoint and token checks (SPEC §2.1 auth, §5)."""

from __future__ import annotations

import base64
import re
import time

import aiohttp
import orjson
import pytest

from fal_realtime.server import Gateway, RunningGateway, TokenError, TokenIssuer

from .conftest import AUTH
from .gateway_tools import open_realtime, read_until_closed, receive_frame, send_msgpack

SECRET = b"s" * 32


def _claims(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    assert isinstance(value, dict)
    return value


async def _token(
    http: aiohttp.ClientSession, running: RunningGateway, body: object, headers: dict[str, str]
) -> tuple[int, object]:
    async with http.post(f"{running.url}/tokens/", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_gw_tok_1_issues_a_url_safe_json_string_bound_to_apps(
    running: RunningGateway, http: aiohttp.ClientSession
) -> None:
    """GW-TOK-1: POST /tokens/ with a key answers 200 with a JSON string, URL-safe, app-bound."""
    status, token = await _token(
        http, running, {"allowed_apps": ["echo"], "token_expiration": 120}, AUTH
    )
    assert status == 200 and isinstance(token, str)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    claims = _claims(token)
    assert claims["allowed_apps"] == ["echo"]
    # Its lifetime, from its own issue time (iat is whole seconds): no clock read here.
    assert 120 <= float(claims["exp"]) - float(claims["iat"]) < 121  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Key wrong"}, {"Authorization": "x"}])
async def test_gw_tok_2_missing_or_bad_key_is_401(
    running: RunningGateway, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """GW-TOK-2: without an accepted key the token endpoint answers 401 with a JSON detail."""
    status, body = await _token(http, running, {"allowed_apps": ["echo"]}, headers)
    assert status == 401 and "Key" in body["detail"]  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [
        {"allowed_apps": []},
        {"allowed_apps": "echo"},
        {"allowed_apps": [1]},
        {"allowed_apps": ["echo"], "token_expiration": 0},
        {"allowed_apps": ["echo"], "token_expiration": "long"},
        ["echo"],
    ],
)
async def test_gw_tok_3_bad_body_is_400(
    running: RunningGateway, http: aiohttp.ClientSession, body: object
) -> None:
    """GW-TOK-3: a malformed token request is refused with 400 and says what is expected."""
    status, answer = await _token(http, running, body, AUTH)
    assert status == 400 and answer["detail"]  # type: ignore[index]


async def test_gw_tok_4_expired_token_is_refused(http: aiohttp.ClientSession) -> None:
    """GW-TOK-4: a token past its exp is refused on both protocols."""
    gateway = Gateway(keys=["k"], token_secret=SECRET)
    gateway.add_realtime("me/echo", _echo)
    gateway.http_app("me/api", upstream=_http_echo)
    past = TokenIssuer(secret=SECRET, clock=lambda: time.time() - 1000)
    token = past.issue(["echo", "api"], 60, subject="t")
    async with gateway.serve(port=0) as running:
        ws = await open_realtime(
            http, running, "me/echo", query=f"fal_jwt_token={token}", headers={}
        )
        transcript = await read_until_closed(ws)
        assert transcript.frames == [("text", {"status": "error", "error": "Unauthorized"})]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{running.ws_url}/me/api?fal_jwt_token={token}")
        assert info.value.status == 401


async def _echo(value: object) -> dict[str, object]:
    return {"echo": value}


async def _http_echo(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
    return aiohttp.web.json_response({"ok": True})


def test_gw_tok_5_forged_malformed_wrong_app_and_expired_are_refused() -> None:
    """GW-TOK-5: verify() refuses a forged signature, garbage, another app, and expiry."""
    now = [1000.0]
    issuer = TokenIssuer(secret=SECRET, clock=lambda: now[0])
    token = issuer.issue(["echo"], 60, subject="s")
    assert issuer.verify(token, "echo").allowed_apps == ("echo",)
    head, claims, _ = token.split(".")
    forged_claims = (
        base64.urlsafe_b64encode(orjson.dumps({"allowed_apps": ["flux"], "exp": 9e12}))
        .rstrip(b"=")
        .decode()
    )
    other = TokenIssuer(secret=b"o" * 32, clock=lambda: now[0]).issue(["echo"], 60, subject="s")
    cases = {
        "bad token signature": [f"{head}.{forged_claims}.{token.split('.')[2]}", other],
        "malformed token": ["garbage", "a.b", ""],
        "not valid for app": [token],
    }
    for message, tokens in cases.items():
        for bad in tokens:
            alias = "flux" if message.startswith("not valid") else "echo"
            with pytest.raises(TokenError, match=message):
                issuer.verify(bad, alias)
    now[0] += 61
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token, "echo")


def test_gw_tok_6_lifetime_is_capped_by_the_gateway() -> None:
    """GW-TOK-6: a token asks for a day but lives at most max_lifetime_s."""
    issuer = TokenIssuer(secret=SECRET, max_lifetime_s=300, clock=lambda: 1000.0)
    claims = _claims(issuer.issue(["echo"], 86400, subject="s"))
    assert claims["exp"] == 1300.0


async def test_gw_tok_7_no_auth_still_issues_tokens(http: aiohttp.ClientSession) -> None:
    """GW-TOK-7: with auth off, tokens are still issued (without a key) and accepted."""
    gateway = Gateway(auth=False)
    gateway.add_realtime("me/echo", _echo)
    async with gateway.serve(port=0) as running:
        status, token = await _token(http, running, {"allowed_apps": ["echo"]}, {})
        assert status == 200 and isinstance(token, str)
        ws = await open_realtime(
            http, running, "me/echo", query=f"fal_jwt_token={token}", headers={}
        )
        await send_msgpack(ws, {"x": 1})
        assert await receive_frame(ws) == ("binary", {"echo": {"x": 1}})
        await ws.close()


def test_gw_tok_8_secrets_stay_out_of_repr() -> None:
    """GW-TOK-8: neither the token secret nor accepted keys appear in any repr."""
    gateway = Gateway(keys=["super-secret-key"], token_secret=SECRET)
    text = repr(gateway.tokens) + repr(gateway.authenticator) + repr(gateway)
    assert "super-secret-key" not in text and SECRET.decode() not in text


def test_gw_tok_9_generated_key_only_without_keys() -> None:
    """GW-TOK-9: a development key is generated only when no key is configured and auth is on."""
    assert Gateway().generated_key is not None
    assert Gateway(keys=["mine"]).generated_key is None
    assert Gateway(auth=False).generated_key is None
    generated = Gateway()
    assert generated.authenticator.check_key(generated.generated_key or "") is not None
