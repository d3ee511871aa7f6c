"""Short-lived realtime tokens for a backend to hand out: :func:`fetch_token`.

A browser app must never hold the fal key. Its backend fetches a token bound to one
app and gives it to the page (fal's ``tokenProvider``), which opens the realtime
socket with it. :func:`fetch_token` is the same single-flight code the realtime
client uses for its own tokens: concurrent calls for one app, key and endpoint share
one fetch, and a token is reused until 90% of its lifetime has passed.
"""

from __future__ import annotations

import math
import os
import ssl
import time
from dataclasses import dataclass, field

import aiohttp

from ._auth import MISSING_KEY_MESSAGE, TokenSource, resolve_key
from ._protocol.apps import parse_app, resolve_base, token_url
from ._transport import SessionLease
from .errors import UNAUTHORIZED, error_for

__all__ = ["Token", "fetch_token"]


@dataclass(frozen=True, slots=True)
class Token:
    """A realtime token and when it expires; its ``repr`` never shows the token.

    Args:
        token: the short-lived token (``fal_jwt_token`` in the realtime URL).
        expires_at: when it expires, in Unix seconds.
    """

    token: str = field(repr=False)
    expires_at: float


async def fetch_token(
    app: str,
    *,
    key: str | None = None,
    expiration_s: float = 120,
    base_url: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    session: aiohttp.ClientSession | None = None,
) -> Token:
    """Fetch a short-lived token for ``app`` (shared and reused as the client's own are).

    The token is bound to the app's alias, as fal binds tokens. A cached token is
    returned while less than 90% of its lifetime has passed, so ``expires_at`` may be
    sooner than ``expiration_s`` from now.

    Args:
        app: the app id, ``owner/alias[/path]`` (e.g. ``fal-ai/echo/realtime``).
        key: the fal key; default ``FAL_KEY``, else ``FAL_KEY_ID:FAL_KEY_SECRET``.
        expiration_s: the lifetime to ask for, in seconds (fal caps it).
        base_url: where the realtime API is (e.g. ``ws://127.0.0.1:8080`` for the
            local gateway); default ``FAL_RUN_HOST``, else fal. The token endpoint
            follows it, as for :func:`fal_realtime.connect`.
        ssl_context: TLS context for the token endpoint (verification stays on).
        session: an aiohttp session to use (never closed here); default the
            package's shared one.

    Returns:
        A :class:`Token` with ``token`` and ``expires_at`` (unix seconds).

    Raises:
        ValueError: a bad app id or a non-positive ``expiration_s``.
        RealtimeError: no key (``UNAUTHORIZED``), or the token endpoint refused or
            could not be reached.
    """
    parsed = parse_app(app)
    if isinstance(expiration_s, bool) or not isinstance(expiration_s, int | float):
        raise TypeError(f"expiration_s must be a number of seconds, not {expiration_s!r}")
    if not (math.isfinite(expiration_s) and expiration_s > 0):
        raise ValueError(f"expiration_s must be > 0 seconds, got {expiration_s}")
    env = os.environ
    resolved_key = resolve_key(key, env)
    if not resolved_key:
        raise error_for(UNAUTHORIZED, MISSING_KEY_MESSAGE)
    base = resolve_base("realtime", base_url, env)
    source = TokenSource(
        app_alias=parsed.alias,
        app_id=parsed.app_path,
        token_url=token_url(base, env),
        key=resolved_key,
        token_provider=None,
        token_expiration_s=float(expiration_s),
        ssl_context=ssl_context,
    )
    lease = SessionLease(session)
    try:
        token = await source.get(lease.session)
        expires_at = source.expires_at()
    finally:
        await lease.release()
    return Token(token, expires_at if expires_at is not None else time.time() + expiration_s)
