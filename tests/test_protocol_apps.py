"""App ids and the URLs of both WebSocket APIs (SPEC §2, §3 "Where to connect")."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fal_client.client import REALTIME_URL_FORMAT, _build_realtime_url, _build_runner_ws_url
from hypothesis import given, settings
from hypothesis import strategies as st

from fal_realtime._protocol.apps import (
    DEFAULT_REST_URL,
    AppId,
    http_ws_url,
    realtime_url,
    redact_url,
    resolve_base,
    token_url,
    validate_max_buffering,
)

FAL = "wss://fal.run"
FAL_WS = "wss://ws.fal.run"
# fal_client builds its realtime URLs on this host (``wss://fal.run/`` unless FAL_RUN_HOST is set).
FAL_CLIENT_BASE = REALTIME_URL_FORMAT.rstrip("/")


def _path(url: str) -> str:
    return urlsplit(url).path


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# -- app ids -------------------------------------------------------------------------------


def test_rt_url_owner_alias() -> None:
    """RT-URL-1: 'owner/alias' connects to wss://fal.run/owner/alias/realtime by default."""
    app = AppId.parse("fal-ai/flux-lora-realtime")
    assert (app.owner, app.alias, app.path, app.namespace) == (
        "fal-ai",
        "flux-lora-realtime",
        None,
        None,
    )
    assert realtime_url(app, base=FAL) == "wss://fal.run/fal-ai/flux-lora-realtime/realtime"


def test_rt_url_sub_path_kept() -> None:
    """RT-URL-2: 'owner/alias/sub...' keeps every sub-path segment in the URL."""
    app = AppId.parse("fal-ai/flux-2/klein")
    assert (app.owner, app.alias, app.path) == ("fal-ai", "flux-2", "klein")
    assert app.key == "fal-ai/flux-2"
    assert app.app_path == str(app) == "fal-ai/flux-2/klein"
    url = realtime_url("fal-ai/a/b/c", base=FAL)
    assert _path(url) == "/fal-ai/a/b/c/realtime"


def test_rt_url_leading_and_trailing_slashes_ignored() -> None:
    """RT-URL-2: slashes around an app id do not change it."""
    assert AppId.parse("/fal-ai/echo/") == AppId.parse("fal-ai/echo")


@pytest.mark.parametrize(
    "app_id",
    [
        "fal-ai/flux-2/klein/realtime",
        "fal-ai/fast-lcm/realtime",
        "workflows/me/flow/realtime",
        "fal-ai/x/realtime/",
    ],
)
def test_rt_url_realtime_not_doubled(app_id: str) -> None:
    """RT-URL-3: '/realtime' is not appended twice when the app id already ends with it."""
    path = _path(realtime_url(app_id, base=FAL))
    assert path.endswith("/realtime")
    assert not path.endswith("/realtime/realtime")
    assert path == "/" + app_id.strip("/")


def test_rt_url_custom_path_not_doubled() -> None:
    """RT-URL-3: a custom path is appended once, and not again when the id ends with it."""
    assert _path(realtime_url("fal-ai/x", base=FAL, path="/ws")) == "/fal-ai/x/ws"
    assert _path(realtime_url("fal-ai/x/ws", base=FAL, path="ws")) == "/fal-ai/x/ws"
    assert _path(realtime_url("fal-ai/x", base=FAL, path="")) == "/fal-ai/x"
    assert _path(realtime_url("fal-ai/x/a", base=FAL, path="/a/b")) == "/fal-ai/x/a/a/b"
    assert _path(realtime_url("fal-ai/x/a/b", base=FAL, path="/a/b")) == "/fal-ai/x/a/b"


def test_rt_url_alias_named_realtime_still_gets_path() -> None:
    """RT-URL-3: an app whose alias is 'realtime' still gets the '/realtime' path."""
    # Only a sub-path ending in the path counts as "already there"; the alias is not a path.
    assert _path(realtime_url("someone/realtime", base=FAL)) == "/someone/realtime/realtime"
    assert (
        _path(realtime_url("workflows/me/realtime", base=FAL)) == "/workflows/me/realtime/realtime"
    )


@pytest.mark.parametrize(
    ("app_id", "owner", "alias"),
    [("123-alias", "123", "alias"), ("42-my-app", "42", "my-app"), ("7-a.b_c", "7", "a.b_c")],
)
def test_rt_url_legacy_numeric_id(app_id: str, owner: str, alias: str) -> None:
    """RT-URL-4: the legacy '123-alias' form means '123/alias'."""
    app = AppId.parse(app_id)
    assert (app.owner, app.alias, app.path, app.namespace) == (owner, alias, None, None)
    assert _path(realtime_url(app_id, base=FAL)) == f"/{owner}/{alias}/realtime"


@pytest.mark.parametrize("namespace", ["workflows", "comfy"])
def test_rt_url_namespaces(namespace: str) -> None:
    """RT-URL-5: 'workflows/' and 'comfy/' are namespaces: owner is the 2nd part, URL keeps them."""
    app = AppId.parse(f"{namespace}/someone/my-flow/sub")
    assert (app.namespace, app.owner, app.alias, app.path) == (
        namespace,
        "someone",
        "my-flow",
        "sub",
    )
    assert app.key == f"{namespace}/someone/my-flow"
    assert _path(realtime_url(app, base=FAL)) == f"/{namespace}/someone/my-flow/sub/realtime"
    assert _path(http_ws_url(app, base=FAL_WS)) == f"/{namespace}/someone/my-flow/sub"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/",
        "fal-ai",
        "fal-ai/",
        "alias-123",
        "123-",
        "-alias",
        "workflows/someone",
        "comfy",
        "fal-ai//echo",
        "fal ai/echo",
        "fal-ai/echo ",
        "https://fal.run/fal-ai/echo",
        "fal-ai/echo?x=1",
        "fal-ai/echo#frag",
        "fal-ai/ech%6f",
        "fal-ai/..",
        "fal-ai/../echo",
        "./echo",
    ],
)
def test_rt_url_invalid_app_id(bad: str) -> None:
    """RT-URL-6: an invalid app id is a ValueError naming the value and the accepted form."""
    with pytest.raises(ValueError) as info:
        AppId.parse(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "owner/alias" in message
    with pytest.raises(ValueError):
        realtime_url(bad, base=FAL)
    with pytest.raises(ValueError):
        http_ws_url(bad, base=FAL_WS)


@pytest.mark.parametrize("bad", [None, 123, b"fal-ai/echo", ["fal-ai", "echo"]])
def test_rt_url_app_id_must_be_str(bad: object) -> None:
    """RT-URL-6: an app id that is not a str is a TypeError."""
    with pytest.raises(TypeError, match="app id must be a str"):
        AppId.parse(bad)  # type: ignore[arg-type]


# -- max_buffering and the query ---------------------------------------------------------


@pytest.mark.parametrize("value", [1, 2, 30, 59, 60])
def test_rt_url_max_buffering_in_range(value: int) -> None:
    """RT-URL-7: max_buffering 1..60 is accepted and sent as a decimal string."""
    assert validate_max_buffering(value) == value
    assert _query(realtime_url("fal-ai/x", base=FAL, max_buffering=value))["max_buffering"] == [
        str(value)
    ]


def test_rt_url_max_buffering_none_is_absent() -> None:
    """RT-URL-7: max_buffering=None leaves it out of the query."""
    assert validate_max_buffering(None) is None
    assert "max_buffering" not in _query(realtime_url("fal-ai/x", base=FAL, token="t"))


@pytest.mark.parametrize("value", [0, 61, -1, 1000])
def test_rt_url_max_buffering_out_of_range(value: int) -> None:
    """RT-URL-7: max_buffering outside 1..60 is a ValueError that names the range."""
    with pytest.raises(ValueError, match=r"1\.\.60"):
        validate_max_buffering(value)
    with pytest.raises(ValueError):
        realtime_url("fal-ai/x", base=FAL, max_buffering=value)


@pytest.mark.parametrize("value", [True, False, "2", 2.0, [2]])
def test_rt_url_max_buffering_wrong_type(value: object) -> None:
    """RT-URL-7: a bool, str or float max_buffering is a TypeError."""
    with pytest.raises(TypeError, match="max_buffering"):
        validate_max_buffering(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        realtime_url("fal-ai/x", base=FAL, max_buffering=value)  # type: ignore[arg-type]


def test_rt_url_query_token_and_buffering() -> None:
    """RT-URL-8: the token goes in fal_jwt_token and max_buffering next to it."""
    url = realtime_url("fal-ai/x", base=FAL, token="a.b-c_d", max_buffering=2)
    assert url == "wss://fal.run/fal-ai/x/realtime?fal_jwt_token=a.b-c_d&max_buffering=2"
    assert _query(url) == {"fal_jwt_token": ["a.b-c_d"], "max_buffering": ["2"]}


def test_rt_url_query_token_is_escaped() -> None:
    """RT-URL-8: a token with reserved characters survives the query intact."""
    token = "a+b/c=d&e f"
    url = realtime_url("fal-ai/x", base=FAL, token=token)
    assert _query(url)["fal_jwt_token"] == [token]
    assert "&e f" not in url


def test_rt_url_no_token_no_query() -> None:
    """RT-URL-8: without a token or buffering the URL has no query at all."""
    assert "?" not in realtime_url("fal-ai/x", base=FAL)
    assert "?" not in http_ws_url("fal-ai/x", base=FAL_WS)


def test_rt_url_extra_query_kept() -> None:
    """RT-URL-8: extra query items (e.g. gateway fault flags) go along with the token."""
    url = realtime_url("fal-ai/x", base=FAL, token="t", extra_query={"fault": "drop"})
    assert _query(url) == {"fault": ["drop"], "fal_jwt_token": ["t"]}


# -- where to connect ----------------------------------------------------------------------


def test_rt_url_defaults_are_fal_hosts() -> None:
    """RT-URL-9: with no base_url or env: wss://fal.run (realtime), wss://ws.fal.run (HTTP)."""
    assert resolve_base("realtime") == "wss://fal.run"
    assert resolve_base("http_ws") == "wss://ws.fal.run"
    assert resolve_base("realtime", None, {}) == "wss://fal.run"
    assert resolve_base("http_ws", None, {"FAL_RUN_HOST": "elsewhere"}) == "wss://ws.fal.run"
    assert resolve_base("realtime", None, {"FAL_WS_RUN_HOST": "elsewhere"}) == "wss://fal.run"


def test_rt_url_base_url_wins_over_env() -> None:
    """RT-URL-9: an explicit base_url wins over FAL_RUN_HOST / FAL_WS_RUN_HOST."""
    env = {"FAL_RUN_HOST": "env.example", "FAL_WS_RUN_HOST": "ws-env.example"}
    assert resolve_base("realtime", "ws://127.0.0.1:8080", env) == "ws://127.0.0.1:8080"
    assert resolve_base("http_ws", "ws://127.0.0.1:8080/", env) == "ws://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("protocol", "name"), [("realtime", "FAL_RUN_HOST"), ("http_ws", "FAL_WS_RUN_HOST")]
)
def test_rt_url_env_bare_host_means_tls(protocol: str, name: str) -> None:
    """RT-URL-9: a bare host in the env means wss:// (TLS implied, as fal's clients do)."""
    assert resolve_base(protocol, None, {name: "gw.example"}) == "wss://gw.example"  # type: ignore[arg-type]
    assert resolve_base(protocol, None, {name: "127.0.0.1:8443"}) == "wss://127.0.0.1:8443"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("protocol", "name"), [("realtime", "FAL_RUN_HOST"), ("http_ws", "FAL_WS_RUN_HOST")]
)
def test_rt_url_env_full_url(protocol: str, name: str) -> None:
    """RT-URL-9: a full ws:// or wss:// URL in the env is used as it is."""
    env = {name: "ws://127.0.0.1:9000/"}
    assert resolve_base(protocol, None, env) == "ws://127.0.0.1:9000"  # type: ignore[arg-type]
    env = {name: "wss://gw.example:8443"}
    assert resolve_base(protocol, None, env) == "wss://gw.example:8443"  # type: ignore[arg-type]


def test_rt_url_empty_env_value_falls_back() -> None:
    """RT-URL-9: an empty FAL_RUN_HOST counts as unset."""
    assert resolve_base("realtime", None, {"FAL_RUN_HOST": ""}) == "wss://fal.run"
    assert resolve_base("realtime", "", {"FAL_RUN_HOST": "h.example"}) == "wss://h.example"


@pytest.mark.parametrize(
    ("given_base", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080"),
        ("https://gw.example", "wss://gw.example"),
        ("HTTP://127.0.0.1:8080", "ws://127.0.0.1:8080"),
        ("ws://127.0.0.1:8080/prefix/", "ws://127.0.0.1:8080/prefix"),
    ],
)
def test_rt_url_http_schemes_map_to_ws(given_base: str, expected: str) -> None:
    """RT-URL-9: http:// maps to ws:// and https:// to wss://; a path prefix is kept."""
    assert resolve_base("realtime", given_base) == expected


def test_rt_url_base_path_prefix_in_url() -> None:
    """RT-URL-9: a base with a path prefix puts the app path after it."""
    base = resolve_base("realtime", "ws://127.0.0.1:8080/gw")
    assert realtime_url("fal-ai/x", base=base) == "ws://127.0.0.1:8080/gw/fal-ai/x/realtime"


@pytest.mark.parametrize("bad", ["ftp://host", "  ", "ws://", "file:///tmp/x"])
def test_rt_url_unusable_base(bad: str) -> None:
    """RT-URL-9: an unusable base is a ValueError that says what is expected."""
    with pytest.raises(ValueError, match="base_url"):
        resolve_base("realtime", bad)


def test_rt_url_unusable_env_names_variable() -> None:
    """RT-URL-9: an unusable env host is a ValueError naming the variable."""
    with pytest.raises(ValueError, match="FAL_WS_RUN_HOST"):
        resolve_base("http_ws", None, {"FAL_WS_RUN_HOST": "ftp://x"})


def test_rt_url_token_url_local_gateway() -> None:
    """RT-URL-10: a ws://host:port base gets its tokens from http://host:port/tokens/."""
    assert token_url("ws://127.0.0.1:8080") == "http://127.0.0.1:8080/tokens/"
    assert token_url("ws://127.0.0.1:8080/gw") == "http://127.0.0.1:8080/gw/tokens/"
    env = {"FAL_REST_URL": "https://rest.example"}
    assert token_url("ws://localhost:9") == "http://localhost:9/tokens/"
    assert token_url("ws://localhost:9", env) == "http://localhost:9/tokens/"


def test_rt_url_token_url_tls_base() -> None:
    """RT-URL-10: a wss:// base uses FAL_REST_URL, else https://rest.fal.ai/tokens/."""
    assert DEFAULT_REST_URL == "https://rest.fal.ai"
    assert token_url("wss://fal.run") == "https://rest.fal.ai/tokens/"
    assert token_url("wss://fal.run", {}) == "https://rest.fal.ai/tokens/"
    env = {"FAL_REST_URL": "https://rest.example/"}
    assert token_url("wss://fal.run", env) == "https://rest.example/tokens/"
    assert token_url("wss://127.0.0.1:8443", env) == "https://rest.example/tokens/"


def test_rt_url_redact_hides_token() -> None:
    """RT-URL-11: redact_url hides fal_jwt_token and keeps the rest readable."""
    url = realtime_url("fal-ai/x", base=FAL, token="SECRET-TOKEN", max_buffering=3)
    redacted = redact_url(url)
    assert "SECRET-TOKEN" not in redacted
    assert redacted == "wss://fal.run/fal-ai/x/realtime?fal_jwt_token=***&max_buffering=3"


def test_rt_url_redact_hides_userinfo_and_other_secrets() -> None:
    """RT-URL-11: redact_url hides userinfo and token/key query values whatever their case."""
    url = "wss://user:PASSWORD@gw.example:8443/a/b?Token=T0K&KEY=K3Y&x=1#frag"
    redacted = redact_url(url)
    for secret in ("user", "PASSWORD", "T0K", "K3Y"):
        assert secret not in redacted
    assert redacted.startswith("wss://***@gw.example:8443/a/b?")
    assert _query(redacted) == {"Token": ["***"], "KEY": ["***"], "x": ["1"]}


def test_rt_url_redact_leaves_plain_url_alone() -> None:
    """RT-URL-11: a URL with nothing secret in it comes back unchanged."""
    url = "wss://fal.run/fal-ai/x/realtime?max_buffering=2"
    assert redact_url(url) == url


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_rt_url_redact_property(secret: str) -> None:
    """RT-URL-11: whatever the token, neither it nor its escaped form survives redaction."""
    token = "S3CR3T" + secret
    redacted = redact_url(realtime_url("fal-ai/x", base=FAL, token=token))
    assert "S3CR3T" not in redacted
    assert quote(token, safe="") not in redacted
    assert _query(redacted)["fal_jwt_token"] == ["***"]


# -- HTTP over WebSockets ------------------------------------------------------------------


def test_rt_url_http_ws_url() -> None:
    """RT-URL-12: HTTP over WS connects to wss://ws.fal.run/{owner}/{alias}[/{path}]."""
    assert http_ws_url("fal-ai/any-llm", base=FAL_WS) == "wss://ws.fal.run/fal-ai/any-llm"
    assert (
        http_ws_url("fal-ai/any-llm", base=FAL_WS, path="/stream")
        == "wss://ws.fal.run/fal-ai/any-llm/stream"
    )
    assert (
        http_ws_url("fal-ai/any-llm/stream", base=FAL_WS, path="stream")
        == "wss://ws.fal.run/fal-ai/any-llm/stream"
    )
    assert (
        http_ws_url("fal-ai/x", base="ws://127.0.0.1:1", token="t")
        == "ws://127.0.0.1:1/fal-ai/x?fal_jwt_token=t"
    )


# -- agreement with fal's own Python client ------------------------------------------------

_FAL_CLIENT_IDS = [
    "fal-ai/flux-lora-realtime",
    "fal-ai/fast-lcm-diffusion",
    "fal-ai/flux-2/klein",
    "fal-ai/any-llm/stream",
    "123-alias",
    "4567-my-realtime-app",
    "workflows/someone/my-flow",
    "comfy/someone/graph/v2",
    "someone/realtime",
]


@pytest.mark.parametrize("app_id", _FAL_CLIENT_IDS)
def test_rt_url_matches_fal_client(app_id: str) -> None:
    """RT-URL-13: our realtime URL equals fal_client's for the same app, token and buffering."""
    ours = realtime_url(app_id, base=FAL_CLIENT_BASE, token="tok.en-1", max_buffering=2)
    theirs = _build_realtime_url(app_id, "tok.en-1", 2)
    assert ours == theirs
    assert realtime_url(app_id, base=FAL_CLIENT_BASE) == _build_realtime_url(app_id, None, None)


@pytest.mark.parametrize("app_id", _FAL_CLIENT_IDS)
def test_rt_url_http_ws_path_matches_fal_client(app_id: str) -> None:
    """RT-URL-13: our HTTP-over-WS path equals the path of fal_client's runner WS URL."""
    theirs = _path(_build_runner_ws_url(app_id, None))
    assert _path(http_ws_url(app_id, base=FAL_WS)) == theirs


def test_rt_url_fal_client_doubles_realtime_we_do_not() -> None:
    """RT-URL-13: the one intended difference: fal_client doubles '/realtime', we do not."""
    app_id = "fal-ai/flux-2/klein/realtime"
    assert _path(_build_realtime_url(app_id, None, None)).endswith("/realtime/realtime")
    assert _path(realtime_url(app_id, base=FAL_CLIENT_BASE)) == "/fal-ai/flux-2/klein/realtime"


_SEGMENT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,11}", fullmatch=True)
_LEGACY_ALIAS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,11}", fullmatch=True)


@st.composite
def _valid_app_ids(draw: st.DrawFn) -> str:
    if draw(st.booleans()) and draw(st.booleans()):
        number = draw(st.integers(min_value=0, max_value=10**9))
        return f"{number}-{draw(_LEGACY_ALIAS)}"
    parts = [draw(_SEGMENT.filter(lambda s: s not in ("workflows", "comfy")))]
    parts.append(draw(_SEGMENT))
    parts += draw(st.lists(_SEGMENT, max_size=3))
    namespace = draw(st.sampled_from([None, "workflows", "comfy"]))
    if namespace:
        parts.insert(0, namespace)
    return "/".join(parts)


@settings(max_examples=150, deadline=None)
@given(_valid_app_ids())
def test_rt_url_path_equals_fal_client_property(app_id: str) -> None:
    """RT-URL-13: for any valid app id (not ending in a 'realtime' sub-path) paths agree."""
    app = AppId.parse(app_id)
    theirs = _build_realtime_url(app_id, None, None)
    ours = realtime_url(app_id, base=FAL_CLIENT_BASE)
    if app.path is not None and (app.path == "realtime" or app.path.endswith("/realtime")):
        # fal_client doubles the suffix; we keep it once (RT-URL-3).
        assert _path(theirs) == _path(ours) + "/realtime"
    else:
        assert _path(ours) == _path(theirs)
        assert ours == theirs
