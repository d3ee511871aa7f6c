"""``POST /tokens/`` on the gateway: a JSON string token, as fal's REST API answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .auth import Authenticator
from .tokens import TokenIssuer

__all__ = ["token_handler"]


def _bad_request(message: str, status: int = 400) -> web.Response:
    return web.json_response({"detail": message}, status=status)


def token_handler(
    authenticator: Authenticator, issuer: TokenIssuer
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Return the aiohttp handler that issues ``issuer``'s tokens to accepted keys."""

    async def handle_tokens(request: web.Request) -> web.StreamResponse:
        """Answer ``POST /tokens/`` with a token for ``allowed_apps``."""
        subject = authenticator.check_key_header(request.headers.get("Authorization"))
        if subject is None:
            return _bad_request(
                "missing or invalid key: send 'Authorization: Key <FAL_KEY>'", status=401
            )
        try:
            body = orjson.loads(await request.read())
        except ValueError:
            return _bad_request("body must be JSON: {'allowed_apps': [...], 'token_expiration': N}")
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object")
        apps = body.get("allowed_apps")
        if (
            not isinstance(apps, list)
            or not apps
            or not all(isinstance(a, str) and a for a in apps)
        ):
            return _bad_request("allowed_apps must be a non-empty list of app aliases")
        lifetime = body.get("token_expiration", 120)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            return _bad_request("token_expiration must be a positive number of seconds")
        return web.json_response(issuer.issue(apps, float(lifetime), subject=subject))

    return handle_tokens
