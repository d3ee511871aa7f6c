"""What the proxy lets through, decided without I/O: targets, apps, headers, token bodies.

Every function here is pure: the adapters and :mod:`._core` feed it what a request
carried and act on the answer. A refusal is a :class:`Refusal` with the HTTP status
and a one-line reason that never holds a credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

import orjson

from .._protocol.apps import DEFAULT_REST_URL, AppId, resolve_base, token_url

__all__ = [
    "FORWARDED_HEADERS",
    "METHODS",
    "TARGET_HEADER",
    "AllowedApps",
    "Refusal",
    "Target",
    "Upstreams",
    "check_header_value",
    "check_target",
    "check_token_body",
    "forwarded_headers",
    "parse_allowed_apps",
    "response_headers",
]

TARGET_HEADER: Final = "x-fal-target-url"
METHODS: Final = ("GET", "POST", "PUT")
#: Request headers passed to fal besides ``x-fal-*`` (never cookies, host or hop-by-hop).
FORWARDED_HEADERS: Final = frozenset({"accept", "content-type"})
#: Response headers never passed back: hop-by-hop, re-framed, or the upstream's cookies.
_DROPPED_RESPONSE_HEADERS: Final = frozenset(
    {
        "connection",
        "date",
        "server",
        "content-encoding",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

RUN_HOST: Final = "fal.run"
QUEUE_HOST: Final = "queue.fal.run"
REST_HOST: Final = "rest.fal.ai"
TOKENS_PATH: Final = "/tokens/"
#: fal's storage upload routes, exactly as ``@fal-ai/server-proxy`` allows them.
STORAGE_ROUTES: Final = frozenset(
    {
        ("/storage/upload/initiate", "storage_type=fal-cdn-v3"),
        ("/storage/upload/complete-multipart", "storage_type=fal-cdn-v3"),
    }
)

# A path of plain segments; "%", "\\", empty and dot segments never get through.
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)+/?$")
_QUERY = re.compile(r"^[A-Za-z0-9._~=&,:+-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Kind = Literal["app", "token", "storage"]


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """A request the proxy will not forward: the status to answer and why (one line)."""

    status: int
    reason: str

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Target:
    """An allowed target: which fal host and route, the path and query, and the app."""

    host: str
    kind: Kind
    path: str
    query: str
    app: AppId | None = None


@dataclass(frozen=True, slots=True)
class AllowedApps:
    """The apps the proxy serves: app keys (``owner/alias``) and their aliases, or all."""

    keys: frozenset[str]
    aliases: frozenset[str]
    every: bool = False

    def allows(self, app: AppId) -> bool:
        """Tell whether requests to ``app`` may go through."""
        return self.every or app.key in self.keys

    def allows_alias(self, alias: str) -> bool:
        """Tell whether a token may be bound to ``alias`` (fal binds tokens to aliases)."""
        return self.every or alias in self.aliases


def parse_allowed_apps(apps: Iterable[str] | str) -> AllowedApps:
    """Return the :class:`AllowedApps` for ``apps`` (app ids, or ``"*"`` for every app).

    Raises:
        ValueError: an entry is not an app id.
    """
    if isinstance(apps, str):
        if apps != "*":
            raise ValueError(
                f"allowed_apps must be a list of app ids or '*', not the string {apps!r}"
            )
        return AllowedApps(frozenset(), frozenset(), every=True)
    parsed = [AppId.parse(app) for app in apps]
    return AllowedApps(frozenset(a.key for a in parsed), frozenset(a.alias for a in parsed))


def _clean(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise Refusal(400, f"{what} holds a control character (CR, LF, NUL...)")
    return value


def check_header_value(name: str, value: str) -> str:
    """Return ``value``; refuse one holding CR, LF or another control character."""
    return _clean(value, f"header {name}")


def check_target(url: str | None, method: str) -> Target:
    """Return the :class:`Target` ``url`` names, or raise :class:`Refusal`.

    Only ``https`` URLs on fal's hosts, without userinfo, port, fragment, encoded or
    dot segments, to the routes fal's server proxy serves: apps on ``fal.run`` and
    ``queue.fal.run``, ``rest.fal.ai/tokens/`` (POST) and the storage upload routes.
    """
    if method not in METHODS:
        raise Refusal(405, f"method {method} is not proxied (GET, POST, PUT)")
    if not url:
        raise Refusal(400, f"missing the {TARGET_HEADER} header")
    _clean(url, TARGET_HEADER)
    if not url.isascii() or " " in url or "\\" in url:
        raise Refusal(400, "the target URL must be plain ASCII without spaces or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Refusal(400, "the target URL cannot be parsed") from None
    if parts.scheme != "https":
        raise Refusal(400, "only https:// targets on fal's hosts are proxied")
    # Compare the whole authority: "fal.run@evil.example", "fal.run:8443" and the like
    # are never fal's host, whatever a URL parser makes of them.
    host = parts.netloc
    if host not in (RUN_HOST, QUEUE_HOST, REST_HOST):
        raise Refusal(400, "the target host is not one of fal's (fal.run, queue.fal.run)")
    if "#" in url:
        raise Refusal(400, "the target URL may not carry a fragment")
    path, query = parts.path, parts.query
    if not _PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise Refusal(400, "the target path holds characters or segments that are not allowed")
    if not _QUERY.match(query):
        raise Refusal(400, "the target query holds characters that are not allowed")
    if host == REST_HOST:
        if path == TOKENS_PATH and not query:
            if method != "POST":
                raise Refusal(405, "token requests are POSTs")
            return Target(host, "token", path, query)
        if (path, query) in STORAGE_ROUTES:
            return Target(host, "storage", path, query)
        raise Refusal(400, "only /tokens/ and the storage upload routes of rest.fal.ai")
    try:
        app = AppId.parse(path)
    except ValueError:
        raise Refusal(400, "the target path is not an app (owner/alias[/path])") from None
    return Target(host, "app", path, query, app)


def check_token_body(body: bytes, allowed: AllowedApps) -> None:
    """Refuse a token request whose ``allowed_apps`` is not within ``allowed``."""
    try:
        value = orjson.loads(body)
    except ValueError:
        raise Refusal(400, "the token request body is not JSON") from None
    apps = value.get("allowed_apps") if isinstance(value, dict) else None
    if not isinstance(apps, list) or not apps or not all(isinstance(a, str) for a in apps):
        raise Refusal(400, "the token request needs allowed_apps: a non-empty list of aliases")
    refused = [a for a in apps if not allowed.allows_alias(a)]
    if refused:
        raise Refusal(403, f"app alias {refused[0][:100]!r} is not allowed by this proxy")


def forwarded_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return the request headers passed to fal: ``x-fal-*``, ``accept``, ``content-type``.

    Raises:
        Refusal: a forwarded value holds a control character (header injection).
    """
    out: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low == TARGET_HEADER:
            continue
        if low.startswith("x-fal-") or low in FORWARDED_HEADERS:
            check_header_value(low, value)
            out[low] = f"{out[low]}, {value}" if low in out else value
    return out


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return the upstream's response headers to pass back (less hop-by-hop and cookies)."""
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in _DROPPED_RESPONSE_HEADERS and not _CONTROL.search(value)
    ]


@dataclass(frozen=True, slots=True)
class Upstreams:
    """Where each fal host's requests go: fal itself, or the local gateway (env)."""

    run: str
    queue: str
    tokens: str
    rest: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Upstreams:
        """Follow ``FAL_RUN_HOST`` and ``FAL_REST_URL`` as the client does (SPEC §3)."""
        base = resolve_base("realtime", None, env)
        scheme, rest_of = base.split("://", 1)
        run = f"{'http' if scheme == 'ws' else 'https'}://{rest_of}"
        return cls(
            run=run,
            queue=f"https://{QUEUE_HOST}",
            tokens=token_url(base, env),
            rest=(env.get("FAL_REST_URL") or DEFAULT_REST_URL).rstrip("/"),
        )

    def url_for(self, target: Target) -> str:
        """Return the URL ``target`` is forwarded to."""
        query = f"?{target.query}" if target.query else ""
        if target.kind == "token":
            return self.tokens
        if target.kind == "storage":
            return f"{self.rest}{target.path}{query}"
        base = self.run if target.host == RUN_HOST else self.queue
        return f"{base}{target.path}{query}"
