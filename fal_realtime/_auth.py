"""Keys from the environment, and short-lived realtime tokens fetched once and shared.

Tokens come from ``POST {rest}/tokens/`` (``Authorization: Key ...``, body
``{"allowed_apps": [alias], "token_expiration": seconds}``); the answer is a JSON
string, or ``{"token": ...}`` / ``{"detail": ...}`` from some proxies. A token is
refreshed at 90% of its lifetime, read from the JWT's ``exp`` when possible. All
connections of one event loop that need a token for the same app, endpoint and key
share one cache entry, and at most one fetch is in flight for it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import logging
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ._transport import post, status_error
from .errors import CONNECTION_LOST, UNAUTHORIZED, RealtimeError, error_for

__all__ = [
    "MISSING_KEY_MESSAGE",
    "TokenProvider",
    "TokenSource",
    "jwt_expiry",
    "parse_token_response",
    "resolve_key",
]

TokenProvider = Callable[[str], str | Awaitable[str]]

MISSING_KEY_MESSAGE = (
    "no fal key found: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), pass key=..., "
    "or pass token_provider=... (a backend that issues tokens)"
)
log = logging.getLogger("fal_realtime")

REFRESH_AT = 0.9
#: Never refetch sooner than this after a fetch, whatever the token claims.
MIN_REFRESH_S = 0.5
FETCH_TIMEOUT_S = 15.0


def resolve_key(key: str | None, env: Mapping[str, str]) -> str | None:
    """Return ``key``, else ``FAL_KEY``, else ``FAL_KEY_ID:FAL_KEY_SECRET``, else None."""
    if key:
        return key
    if value := env.get("FAL_KEY"):
        return value
    key_id, secret = env.get("FAL_KEY_ID"), env.get("FAL_KEY_SECRET")
    if key_id and secret:
        return f"{key_id}:{secret}"
    return None


def jwt_expiry(token: str) -> float | None:
    """Return the ``exp`` claim of a JWT, or None when it cannot be read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(payload)
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


def parse_token_response(data: Any) -> str:
    """Return the token from a ``/tokens/`` answer: a string, ``{"token"}`` or ``{"detail"}``."""
    if isinstance(data, str) and data:
        return data
    if isinstance(data, dict):
        for name in ("token", "detail"):
            if isinstance(data.get(name), str) and data[name]:
                return str(data[name])
    raise RealtimeError(
        UNAUTHORIZED, "the token endpoint answered without a token (expected a JSON string)"
    )


@dataclass(slots=True)
class _Entry:
    token: str | None = None
    refresh_at: float = 0.0
    expires_at: float = 0.0
    inflight: asyncio.Future[str] | None = None


@dataclass(slots=True)
class _LoopCache:
    entries: dict[tuple[Any, ...], _Entry] = field(default_factory=dict)


_caches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCache] = (
    weakref.WeakKeyDictionary()
)


def _cache() -> _LoopCache:
    loop = asyncio.get_running_loop()
    cache = _caches.get(loop)
    if cache is None:
        cache = _caches[loop] = _LoopCache()
    return cache


class TokenSource:
    """Give one connection its tokens: from a shared cache, a fetch, or the user's provider."""

    def __init__(
        self,
        *,
        app_alias: str,
        app_id: str,
        token_url: str,
        key: str | None,
        token_provider: TokenProvider | None,
        token_expiration_s: float,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._alias = app_alias
        self._app_id = app_id
        self._url = token_url
        self._key = key
        self._provider = token_provider
        self._lifetime = token_expiration_s
        self._clock = clock
        self._ssl_context = ssl_context
        fingerprint = hashlib.sha256((key or "").encode()).hexdigest()[:16]
        # The provider itself (not its id(), which Python reuses) keys its tokens.
        self._cache_key = (token_url, fingerprint, token_provider, app_alias, token_expiration_s)

    def __repr__(self) -> str:
        return f"TokenSource(app={self._app_id!r}, url={self._url!r})"

    def _entry(self) -> _Entry:
        entries = _cache().entries
        entry = entries.get(self._cache_key)
        if entry is None:
            entry = entries[self._cache_key] = _Entry()
        return entry

    def expires_at(self) -> float | None:
        """Return when the cached token expires (unix seconds), if one is cached."""
        entry = self._entry()
        return entry.expires_at if entry.token is not None else None

    def current(self) -> str | None:
        """Return the cached token, if any (for noting which token a socket used)."""
        return self._entry().token

    def refresh_due_in(self) -> float | None:
        """Return seconds until the cached token should be refreshed (None: none cached)."""
        entry = self._entry()
        if entry.token is None:
            return None
        return max(0.0, entry.refresh_at - self._clock())

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given)."""
        entry = self._entry()
        if token is None or entry.token == token:
            entry.token = None
            entry.refresh_at = entry.expires_at = 0.0

    async def get(self, session: aiohttp.ClientSession, *, fresh: bool = False) -> str:
        """Return a token that is not due for refresh, fetching once for all callers."""
        entry = self._entry()
        now = self._clock()
        if not fresh and entry.token is not None and now < entry.refresh_at:
            return entry.token
        if entry.inflight is None or entry.inflight.done():
            entry.inflight = asyncio.get_running_loop().create_future()
            inflight = entry.inflight
            try:
                token = await self._obtain(session)
            except BaseException as exc:
                # Other connections waiting on this fetch get an error they can retry on,
                # never a CancelledError that would look like their own cancellation.
                shared = (
                    exc
                    if isinstance(exc, Exception)
                    else error_for(CONNECTION_LOST, "the shared token fetch was cancelled")
                )
                inflight.set_exception(shared)
                inflight.exception()  # retrieved: no "never retrieved" warning without waiters
                raise
            issued = self._clock()
            lifetime = (jwt_expiry(token) or issued + self._lifetime) - issued
            if lifetime <= 0:
                # An exp already past by our clock means the clocks disagree, not that the
                # token is dead: trust the lifetime we asked for rather than refetch at once.
                lifetime = self._lifetime
            entry.token = token
            entry.expires_at = issued + lifetime
            entry.refresh_at = issued + max(MIN_REFRESH_S, lifetime * REFRESH_AT)
            inflight.set_result(token)
            return token
        return await asyncio.shield(entry.inflight)

    async def keep_fresh(self, session: aiohttp.ClientSession) -> None:
        """Refresh the shared token ahead of its expiry, until cancelled (never raises).

        A failed refresh is logged and retried 5 s later; the next socket fetches anew.
        """
        while True:
            due = self.refresh_due_in()
            await asyncio.sleep(due if due is not None else 60.0)
            try:
                await self.get(session)
            except Exception as exc:  # a refresh never ends the session it serves
                log.info(
                    "fal_realtime: token refresh for %s failed: %s",
                    self._app_id,
                    exc,
                    extra={"fal_app_id": self._app_id},
                )
                await asyncio.sleep(5.0)

    async def _obtain(self, session: aiohttp.ClientSession) -> str:
        if self._provider is not None:
            value = self._provider(self._app_id)
            token = await value if inspect.isawaitable(value) else value
            if not isinstance(token, str) or not token:
                raise RealtimeError(
                    UNAUTHORIZED, "token_provider returned no token (expected a non-empty str)"
                )
            return token
        if not self._key:
            raise error_for(UNAUTHORIZED, MISSING_KEY_MESSAGE)
        body = {"allowed_apps": [self._alias], "token_expiration": int(self._lifetime)}
        status, raw = await post(
            session,
            self._url,
            json=body,
            headers={"Authorization": f"Key {self._key}"},
            timeout_s=FETCH_TIMEOUT_S,
            what="token request",
            ssl_context=self._ssl_context,
        )
        if status >= 400:
            # A proxy may echo the request back: never let the key through in the message.
            detail = raw.decode("utf-8", "replace").replace(self._key, "***")[:200]
            raise status_error(status, what="token request", where=self._url, detail=detail)
        try:
            return parse_token_response(orjson.loads(raw))
        except ValueError:
            raise RealtimeError(
                UNAUTHORIZED, f"the token endpoint {self._url} answered with non-JSON"
            ) from None
