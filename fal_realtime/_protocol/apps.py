"""Parse app ids and build the URLs of both WebSocket APIs (no I/O).

App ids are ``owner/alias[/sub...]``; the legacy form ``123-alias`` means
``123/alias``; ``workflows/`` and ``comfy/`` are namespaces whose owner is the
second part. Hosts come from an explicit ``base_url``, else the environment
(``FAL_RUN_HOST`` / ``FAL_WS_RUN_HOST``, a bare host meaning TLS, or a full URL),
else fal's own hosts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_REST_URL",
    "DEFAULT_RUN_HOST",
    "DEFAULT_WS_RUN_HOST",
    "MAX_BUFFERING_RANGE",
    "NAMESPACES",
    "AppId",
    "http_ws_url",
    "parse_app",
    "realtime_url",
    "redact_url",
    "resolve_base",
    "token_url",
    "validate_max_buffering",
]

NAMESPACES: Final = ("workflows", "comfy")
DEFAULT_RUN_HOST: Final = "fal.run"
DEFAULT_WS_RUN_HOST: Final = "ws.fal.run"
DEFAULT_REST_URL: Final = "https://rest.fal.ai"
MAX_BUFFERING_RANGE: Final = (1, 60)

_ACCEPTED_FORM: Final = (
    "expected 'owner/alias[/path]' (e.g. 'fal-ai/flux-lora-realtime'), "
    "the legacy '123-alias', or 'workflows/owner/alias'"
)
_LEGACY = re.compile(r"^([0-9]+)-([A-Za-z0-9][A-Za-z0-9._-]*)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
_SECRET_QUERY_KEYS: Final = frozenset({"fal_jwt_token", "token", "key"})

Protocol = Literal["realtime", "http_ws"]


@dataclass(frozen=True, slots=True)
class AppId:
    """A parsed fal app id: ``[namespace/]owner/alias[/path]``.

    Args:
        owner: the app's owner (e.g. ``fal-ai``).
        alias: the app's alias (e.g. ``flux-lora-realtime``).
        path: what follows the alias, if anything (e.g. ``stream``).
        namespace: ``workflows`` or ``comfy`` for an app in that namespace, else None.
    """

    owner: str
    alias: str
    path: str | None = None
    namespace: str | None = None

    @classmethod
    def parse(cls, app_id: str) -> AppId:
        """Parse ``app_id``; raise ``ValueError`` naming it and the accepted form.

        Args:
            app_id: ``owner/alias[/path]``, ``workflows/owner/alias``, or the legacy
                ``123-alias``.
        """
        if not isinstance(app_id, str):
            raise TypeError(f"app id must be a str, not {type(app_id).__name__}")
        text = app_id.strip("/")
        if "://" in text or "?" in text or "#" in text:
            raise ValueError(f"invalid app id {app_id!r}: {_ACCEPTED_FORM}")
        parts = text.split("/") if text else []
        if len(parts) == 1:
            legacy = _LEGACY.match(parts[0])
            if legacy is None:
                raise ValueError(f"invalid app id {app_id!r}: {_ACCEPTED_FORM}")
            parts = [legacy.group(1), legacy.group(2)]
        namespace: str | None = None
        if parts and parts[0] in NAMESPACES:
            namespace, parts = parts[0], parts[1:]
        # "." and ".." would be resolved away by URL normalization and reach another app.
        if len(parts) < 2 or not all(_SEGMENT.match(p) and p not in (".", "..") for p in parts):
            raise ValueError(f"invalid app id {app_id!r}: {_ACCEPTED_FORM}")
        return cls(
            owner=parts[0],
            alias=parts[1],
            path="/".join(parts[2:]) or None,
            namespace=namespace,
        )

    @property
    def key(self) -> str:
        """Return ``[namespace/]owner/alias``: the app without its sub-path."""
        prefix = f"{self.namespace}/" if self.namespace else ""
        return f"{prefix}{self.owner}/{self.alias}"

    @property
    def app_path(self) -> str:
        """Return ``[namespace/]owner/alias[/path]`` as it appears in URLs."""
        return f"{self.key}/{self.path}" if self.path else self.key

    def __str__(self) -> str:
        return self.app_path


def parse_app(app_id: str) -> AppId:
    """Return :meth:`AppId.parse` of ``app_id``, remembered for the ids seen last.

    A service opens many connections to a few apps: each id is parsed once (an
    ``AppId`` is frozen, so connections share it).
    """
    if type(app_id) is str:
        return _parse_remembered(app_id)
    return AppId.parse(app_id)


_parse_remembered = functools.lru_cache(maxsize=256)(AppId.parse)


def validate_max_buffering(value: int | None) -> int | None:
    """Return ``value`` when it is None or an int in 1..60, else raise."""
    if value is None:
        return None
    low, high = MAX_BUFFERING_RANGE
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_buffering must be an int in {low}..{high}, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"max_buffering must be in {low}..{high} (inclusive), got {value}")
    return value


@functools.lru_cache(maxsize=64)  # pure, and called per connection with the same few bases
def _normalize_base(base: str, *, what: str) -> str:
    """Turn a bare host or an http(s)/ws(s) URL into a ``ws(s)://host[:port][/prefix]`` base."""
    # Strip slashes only from the path below: "ws://".rstrip("/") would read as host "ws".
    text = base.strip()
    if not text:
        raise ValueError(f"{what} is empty: expected a host such as 'fal.run' or a ws:// URL")
    if "://" not in text:
        text = f"wss://{text}"
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(
            f"{what} {base!r} is not usable: expected a bare host ('fal.run'), "
            "or a ws://, wss://, http:// or https:// URL"
        )
    try:
        port = parts.port
    except ValueError:  # not a number, or outside 0..65535
        port = 0
    if port == 0:
        raise ValueError(f"{what} {base!r} has a bad port: expected 1..65535 (or none)")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def resolve_base(
    protocol: Protocol,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    option: str = "base_url",
) -> str:
    """Return where to connect: ``base_url``, else the env host, else fal's host.

    ``option`` names ``base_url`` in an error (the command line says ``--base-url``).
    """
    if base_url:
        return _normalize_base(base_url, what=option)
    env = env or {}
    name = "FAL_RUN_HOST" if protocol == "realtime" else "FAL_WS_RUN_HOST"
    if value := env.get(name):
        return _normalize_base(value, what=name)
    default = DEFAULT_RUN_HOST if protocol == "realtime" else DEFAULT_WS_RUN_HOST
    return f"wss://{default}"


def token_url(base: str, env: Mapping[str, str] | None = None) -> str:
    """Return the token endpoint that goes with a resolved ``base``.

    A plain ``ws://`` base is the local gateway, which issues tokens itself;
    anything else uses ``FAL_REST_URL`` or fal's REST host.
    """
    parts = urlsplit(base)
    if parts.scheme == "ws":
        return urlunsplit(("http", parts.netloc, f"{parts.path}/tokens/", "", ""))
    rest = (env or {}).get("FAL_REST_URL") or DEFAULT_REST_URL
    return f"{rest.rstrip('/')}/tokens/"


def _join_path(app: AppId, path: str) -> str:
    """Append ``path`` to the app path unless the app id's sub-path already ends with it."""
    # Only the sub-path counts: an alias that happens to be "realtime" is not the path.
    sub = app.path or ""
    suffix = path.strip("/")
    if not suffix or sub == suffix or sub.endswith(f"/{suffix}"):
        return f"/{app.app_path}"
    return f"/{app.app_path}/{suffix}"


def _with_query(base: str, path: str, query: Mapping[str, str]) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path + path, urlencode(query), ""))


def realtime_url(
    app_id: str | AppId,
    *,
    base: str,
    path: str = "/realtime",
    token: str | None = None,
    max_buffering: int | None = None,
    extra_query: Mapping[str, str] | None = None,
) -> str:
    """Build ``{base}/{app path}{path}?fal_jwt_token=…&max_buffering=…``."""
    app = app_id if isinstance(app_id, AppId) else AppId.parse(app_id)
    buffering = validate_max_buffering(max_buffering)
    if not token and not extra_query:
        return _plain_realtime_url(app, base, path, buffering)
    return _build_realtime_url(app, base, path, token, buffering, extra_query)


def _build_realtime_url(
    app: AppId,
    base: str,
    path: str,
    token: str | None,
    max_buffering: int | None,
    extra_query: Mapping[str, str] | None,
) -> str:
    query: dict[str, str] = dict(extra_query or {})
    if token:
        query["fal_jwt_token"] = token
    if max_buffering is not None:  # validated
        query["max_buffering"] = str(max_buffering)
    return _with_query(base, _join_path(app, path), query)


@functools.lru_cache(maxsize=256)  # the same few URLs, for every connection without a token
def _plain_realtime_url(app: AppId, base: str, path: str, max_buffering: int | None) -> str:
    return _build_realtime_url(app, base, path, None, max_buffering, None)


def http_ws_url(
    app_id: str | AppId,
    *,
    base: str,
    path: str = "",
    token: str | None = None,
    extra_query: Mapping[str, str] | None = None,
) -> str:
    """Build ``{base}/{app path}[/{path}]`` for HTTP over WebSockets."""
    return realtime_url(app_id, base=base, path=path, token=token, extra_query=extra_query)


def redact_url(url: str) -> str:
    """Return ``url`` with token-like query values and userinfo replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.netloc != netloc:
        netloc = f"***@{netloc}"
    query = [
        (name, "***" if name.lower() in _SECRET_QUERY_KEYS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))
