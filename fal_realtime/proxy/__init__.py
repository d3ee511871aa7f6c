"""fal's server proxy and a realtime token route, for browser apps with a Python backend.

fal's JavaScript client in a browser must never hold the key. It calls its backend
instead, in one of two ways, both served here under one prefix (``/api/fal``):

- ``{prefix}/proxy``: fal's ``@fal-ai/server-proxy`` contract. The browser sends each
  request here with the real target in ``x-fal-target-url``; the proxy checks it (only
  ``https`` on fal's hosts, only the apps in ``allowed_apps``, only requests that pass
  ``authorize``), adds ``Authorization: Key <key>`` and streams fal's answer back.
  ``fal.config({proxyUrl: "/api/fal/proxy"})`` in the page.
- ``{prefix}/token?app=owner/alias[/path]``: ``{"token": ..., "expires_at": ...}``, a
  short-lived token bound to that app (:func:`fal_realtime.fetch_token`), for fal's
  ``tokenProvider``; the page then opens the realtime socket to fal itself.

Mount it in FastAPI/Starlette (:func:`asgi_app`), aiohttp (:func:`aiohttp_app`), or run
``fal-realtime proxy`` for front-end development. Deny by default: ``allowed_apps``
is required, and so is ``authorize`` unless ``allow_unauthenticated=True`` says
otherwise. The proxy is not a rate limiter: a user who passes ``authorize`` can
spend the key on the allowed apps as fast as fal lets them.

For development and tests, targets on fal's hosts go where ``FAL_RUN_HOST`` and
``FAL_REST_URL`` point (e.g. the local gateway), as the client's own requests do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ._aio import proxy_routes
from ._asgi import ProxyASGI
from ._core import DEFAULT_MAX_BODY_BYTES, Authorize, Proxy, ProxyRequest, Reply, loopback_only

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Authorize",
    "Proxy",
    "ProxyASGI",
    "ProxyRequest",
    "Reply",
    "aiohttp_app",
    "asgi_app",
    "loopback_only",
    "proxy_routes",
]


def asgi_app(
    *,
    key: str | None = None,
    allowed_apps: Iterable[str] | str | None = None,
    authorize: Authorize | None = None,
    **options: Any,
) -> ProxyASGI:
    """Return the proxy as an ASGI app: ``app.mount("/api/fal", asgi_app(...))``.

    Args:
        key: the fal key; default ``FAL_KEY`` (else ``FAL_KEY_ID:FAL_KEY_SECRET``).
        allowed_apps: the app ids the browser may use, or ``"*"`` for every app.
        authorize: ``authorize(request: ProxyRequest) -> bool`` (or awaitable).
        **options: the other keyword arguments of :class:`Proxy`
            (``allow_unauthenticated``, ``max_body_bytes``, ``ssl_context``...).

    Raises:
        ValueError: as :class:`Proxy` says (no key, no ``allowed_apps``, no ``authorize``).
    """
    return ProxyASGI(Proxy(key=key, allowed_apps=allowed_apps, authorize=authorize, **options))


def aiohttp_app(
    *,
    key: str | None = None,
    allowed_apps: Iterable[str] | str | None = None,
    authorize: Authorize | None = None,
    **options: Any,
) -> web.Application:
    """Return the proxy as an aiohttp app: ``app.add_subapp("/api/fal", aiohttp_app(...))``.

    Args:
        key: the fal key; default ``FAL_KEY`` (else ``FAL_KEY_ID:FAL_KEY_SECRET``).
        allowed_apps: the app ids the browser may use, or ``"*"`` for every app.
        authorize: ``authorize(request: ProxyRequest) -> bool`` (or awaitable).
        **options: the other keyword arguments of :class:`Proxy`.

    Raises:
        ValueError: as :class:`Proxy` says.
    """
    proxy = Proxy(key=key, allowed_apps=allowed_apps, authorize=authorize, **options)
    app = web.Application()
    app.router.add_routes(proxy_routes(proxy))
    return app
