"""The framework-free proxy: decide each request, forward it with aiohttp, stream back.

The adapters (:mod:`._asgi`, :mod:`._aio`) turn their framework's request into a
:class:`ProxyRequest` and a body iterator, call :meth:`Proxy.forward` or
:meth:`Proxy.token`, and write the :class:`Reply` out, closing it afterwards.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson

from .._auth import MISSING_KEY_MESSAGE, resolve_key
from .._protocol.apps import AppId, resolve_base
from .._transport import SessionLease
from .._version import __version__
from ..errors import RATE_LIMITED, TIMEOUT, UNAUTHORIZED, RealtimeError
from ..tokens import Token, fetch_token
from ._rules import (
    TARGET_HEADER,
    AllowedApps,
    Refusal,
    Target,
    Upstreams,
    check_target,
    check_token_body,
    forwarded_headers,
    parse_allowed_apps,
    response_headers,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Authorize",
    "Proxy",
    "ProxyRequest",
    "Reply",
    "loopback_only",
]

log = logging.getLogger("fal_realtime.proxy")

#: The largest request body forwarded unless configured (a 413 past it).
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: A token request's body is a few aliases: never read more than this.
_MAX_TOKEN_BODY_BYTES: Final = 64 * 1024
#: An error body from upstream is read (to clean it of the key) up to this size.
_MAX_ERROR_BODY_BYTES: Final = 1024 * 1024
_CONNECT_TIMEOUT_S: Final = 15.0
_NO_STORE: Final = [("cache-control", "no-store")]


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """What ``authorize`` sees of a request: method, headers, query, client address.

    ``native`` is the framework's own request (an ASGI scope, an aiohttp
    ``web.Request``), for checks that need its session or cookies.
    """

    method: str
    route: str
    headers: tuple[tuple[str, str], ...]
    query: Mapping[str, str]
    client: str | None
    native: Any = field(repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """Return the header ``name`` (case-insensitive; repeated values joined by ', ')."""
        low = name.lower()
        values = [v for k, v in self.headers if k.lower() == low]
        return ", ".join(values) if values else None


Authorize = Callable[[ProxyRequest], bool | Awaitable[bool]]


def loopback_only(request: ProxyRequest) -> bool:
    """Accept requests from this machine, sent by a page of this machine (or no page).

    For development: the client address is a loopback one, and the ``Origin`` header,
    when there is one, names ``localhost`` or a loopback address, so that a web site
    open in the same browser cannot spend the key.

    Args:
        request: the request to check.
    """
    if not _is_loopback(request.client):
        return False
    origin = request.header("origin")
    if origin is None:
        return True
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        return False
    return host == "localhost" or _is_loopback(host)


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class Reply:
    """An answer for the adapter to write: status, headers, then ``body`` or ``stream``."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: _Upstream | None = None

    async def aclose(self) -> None:
        """Release what the answer holds (the upstream response); idempotent."""
        if self.stream is not None:
            await self.stream.aclose()

    @classmethod
    def json(cls, status: int, value: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        """Return a JSON answer."""
        return cls(
            status,
            [("content-type", "application/json"), *_NO_STORE, *headers],
            orjson.dumps(value),
        )

    @classmethod
    def refusal(cls, refusal: Refusal) -> Reply:
        """Return the answer for ``refusal``: its status and ``{"detail": reason}``."""
        extra = [("allow", "GET, POST, PUT")] if refusal.status == 405 else []
        return cls.json(refusal.status, {"detail": refusal.reason}, extra)


class _Upstream:
    """A streaming upstream response, and the session hold it needs until it is read."""

    def __init__(self, response: aiohttp.ClientResponse, lease: SessionLease) -> None:
        self._response = response
        self._lease = lease
        self._closed = False

    def __aiter__(self) -> _Upstream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.content.readany()
        except aiohttp.ClientPayloadError as exc:
            log.info("fal_realtime.proxy: the upstream body broke off: %s", type(exc).__name__)
            raise StopAsyncIteration from None
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._response.release()
        await self._lease.release()


class _TooLarge(Exception):
    """The request body went past the limit while being forwarded."""


class _BoundedBody:
    """Pass a request body on chunk by chunk, failing once it exceeds ``limit`` bytes."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._seen = 0
        self.too_large = False

    def __aiter__(self) -> _BoundedBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        self._seen += len(chunk)
        if self._seen > self._limit:
            self.too_large = True
            raise _TooLarge
        return chunk


async def _read_bounded(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise Refusal(413, f"the request body exceeds {limit} bytes")
    return bytes(data)


class Proxy:
    """fal's server proxy and the token route, for one key and one list of apps.

    Args:
        key: the fal key added to forwarded requests; default ``FAL_KEY``, else
            ``FAL_KEY_ID:FAL_KEY_SECRET``.
        allowed_apps: the app ids requests may reach and tokens may be bound to
            (``["fal-ai/flux-lora-realtime"]``), or ``"*"`` for every app.
        authorize: ``authorize(request) -> bool`` (or awaitable): whether this
            request may spend the key, e.g. a session check. Required unless
            ``allow_unauthenticated=True``.
        allow_unauthenticated: serve requests without an ``authorize`` check.
        forward_authorization: send the browser's own ``Authorization`` header to fal
            instead of the key when it has one (off: it never reaches fal).
        max_body_bytes: the largest request body forwarded (413 past it).
        token_expiration_s: the lifetime asked for tokens of the token route.
        ssl_context: TLS context for the upstream (verification stays on).
        session: an aiohttp session to forward with, kept (and closed) by you: it
            keeps connections to fal open between requests. Default: the package's
            shared session, held per request.
        env: where to read ``FAL_RUN_HOST``/``FAL_REST_URL`` and the key; default
            ``os.environ`` (read once, here).

    Raises:
        ValueError: no key, no ``allowed_apps``, an entry that is not an app id, or
            neither ``authorize`` nor ``allow_unauthenticated=True``.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        allowed_apps: Iterable[str] | str | None = None,
        authorize: Authorize | None = None,
        allow_unauthenticated: bool = False,
        forward_authorization: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        token_expiration_s: float = 120,
        ssl_context: ssl.SSLContext | None = None,
        session: aiohttp.ClientSession | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        if allowed_apps is None:
            raise ValueError(
                "pass allowed_apps=[...] (the app ids the browser may use), or '*' for every app"
            )
        if authorize is None and not allow_unauthenticated:
            raise ValueError(
                "pass authorize=... (a check that the request may spend your key), "
                "or allow_unauthenticated=True to serve anyone who can reach the proxy"
            )
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise TypeError(f"max_body_bytes must be an int, not {max_body_bytes!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
        if not token_expiration_s > 0:
            raise ValueError(f"token_expiration_s must be > 0, got {token_expiration_s}")
        self.allowed: AllowedApps = parse_allowed_apps(allowed_apps)
        resolved = resolve_key(key, env)
        if not resolved:
            raise ValueError(MISSING_KEY_MESSAGE.partition(", or pass token_provider")[0])
        self._key = resolved
        self._authorize = authorize
        self._forward_authorization = forward_authorization
        self.max_body_bytes = max_body_bytes
        self._token_expiration_s = token_expiration_s
        self._ssl = ssl_context
        self._session = session
        self.upstreams = Upstreams.from_env(env)
        self._realtime_base = resolve_base("realtime", None, env)

    def __repr__(self) -> str:
        apps = "*" if self.allowed.every else sorted(self.allowed.keys)
        return f"Proxy(allowed_apps={apps!r}, upstream={self.upstreams.run!r})"

    # -- the two routes -------------------------------------------------------------

    async def forward(self, request: ProxyRequest, body: AsyncIterator[bytes]) -> Reply:
        """Answer ``{prefix}/proxy``: check, forward to fal, and return fal's answer.

        The caller writes the reply out and then awaits ``reply.aclose()``.
        """
        try:
            target = check_target(request.header(TARGET_HEADER), request.method)
            await self._check_authorized(request)
            return await self._forward(request, target, body)
        except Refusal as refusal:
            log.info("fal_realtime.proxy: refused a proxy request: %s", refusal)
            return Reply.refusal(refusal)

    async def token(self, request: ProxyRequest) -> Reply:
        """Answer ``{prefix}/token?app=owner/alias[/path]`` with a token for that app."""
        try:
            if request.method != "GET":
                raise Refusal(405, f"method {request.method} is not allowed (GET)")
            await self._check_authorized(request)
            text = request.query.get("app")
            if not text:
                raise Refusal(400, "pass the app as ?app=owner/alias[/path]")
            try:
                app = AppId.parse(text)
            except ValueError as exc:
                raise Refusal(400, str(exc)[:300]) from None
            if not self.allowed.allows(app):
                raise Refusal(403, f"app {app.key!r} is not allowed by this proxy")
            token = await self._fetch_token(app)
        except Refusal as refusal:
            log.info("fal_realtime.proxy: refused a token request: %s", refusal)
            extra = [("allow", "GET")] if refusal.status == 405 else []
            return Reply.json(refusal.status, {"detail": refusal.reason}, extra)
        return Reply.json(200, {"token": token.token, "expires_at": int(token.expires_at)})

    # -- steps ------------------------------------------------------------------------

    async def _check_authorized(self, request: ProxyRequest) -> None:
        if self._authorize is None:
            return
        try:
            verdict = self._authorize(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception:
            log.exception("fal_realtime.proxy: authorize() raised; the request is refused")
            raise Refusal(500, "the proxy's authorize check failed") from None
        if verdict is not True:
            raise Refusal(401, "unauthorized: the proxy's authorize check refused this request")

    async def _fetch_token(self, app: AppId) -> Token:
        try:
            return await fetch_token(
                app.app_path,
                key=self._key,
                expiration_s=self._token_expiration_s,
                base_url=self._realtime_base,
                ssl_context=self._ssl,
                session=self._session,
            )
        except RealtimeError as exc:
            statuses: dict[str, int] = {RATE_LIMITED: 429, TIMEOUT: 504}
            status = statuses.get(exc.code, 502)
            reason = "fal refused the proxy's key" if exc.code == UNAUTHORIZED else exc.message
            raise Refusal(status, self._scrub_text(f"token fetch failed: {reason}")) from None

    def _credentials(self, request: ProxyRequest) -> str:
        if self._forward_authorization and (own := request.header("authorization")):
            return own
        return f"Key {self._key}"

    async def _forward(
        self, request: ProxyRequest, target: Target, body: AsyncIterator[bytes]
    ) -> Reply:
        if target.app is not None and not self.allowed.allows(target.app):
            raise Refusal(403, f"app {target.app.key!r} is not allowed by this proxy")
        headers = forwarded_headers(request.headers)
        length = request.header("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise Refusal(413, f"the request body exceeds {self.max_body_bytes} bytes")
        data: bytes | _BoundedBody | None = None
        if request.method != "GET":
            if target.kind == "token":
                data = await _read_bounded(body, _MAX_TOKEN_BODY_BYTES)
                check_token_body(data, self.allowed)
            else:
                data = _BoundedBody(body, self.max_body_bytes)
        headers["authorization"] = self._credentials(request)
        headers["x-fal-client-proxy"] = f"fal-realtime-proxy/{__version__}"
        url = self.upstreams.url_for(target)
        lease = SessionLease(self._session)
        try:
            response = await lease.session.request(
                request.method,
                url,
                data=data,
                headers=headers,
                allow_redirects=False,
                ssl=self._ssl if self._ssl is not None else True,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT_S),
            )
        except BaseException as exc:
            await lease.release()
            if isinstance(data, _BoundedBody) and data.too_large:
                raise Refusal(
                    413, f"the request body exceeds {self.max_body_bytes} bytes"
                ) from None
            if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
                log.warning(
                    "fal_realtime.proxy: cannot reach %s: %s", target.host, type(exc).__name__
                )
                raise Refusal(502, f"cannot reach the upstream for {target.host}") from None
            raise
        if isinstance(data, _BoundedBody) and data.too_large:
            response.release()
            await lease.release()
            raise Refusal(413, f"the request body exceeds {self.max_body_bytes} bytes")
        return await self._answer(response, lease, target)

    async def _answer(
        self, response: aiohttp.ClientResponse, lease: SessionLease, target: Target
    ) -> Reply:
        status = response.status
        if 300 <= status < 400:
            response.release()
            await lease.release()
            log.warning(
                "fal_realtime.proxy: %s redirected (HTTP %d); not followed", target.host, status
            )
            raise Refusal(
                502, f"the upstream redirected (HTTP {status}); redirects are not followed"
            )
        headers = [
            (name, self._scrub_text(value))
            for name, value in response_headers(response.headers.items())
        ]
        if status < 400:
            return Reply(status, headers, stream=_Upstream(response, lease))
        # An error body is small: read it whole, and make sure the key is not in it.
        raw = bytearray()
        try:
            while len(raw) < _MAX_ERROR_BODY_BYTES and (chunk := await response.content.readany()):
                raw += chunk
        except aiohttp.ClientError:
            pass
        finally:
            response.release()
            await lease.release()
        return Reply(status, headers, bytes(raw).replace(self._key.encode(), b"***"))

    def _scrub_text(self, text: str) -> str:
        return text.replace(self._key, "***")
