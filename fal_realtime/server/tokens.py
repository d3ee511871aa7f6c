"""Signed, expiring tokens bound to apps.

Tokens are JWTs (HS256) so that clients can read their ``exp`` as they do with
fal's: ``base64url(header).base64url(claims).base64url(hmac)``, URL-safe. The
claims bind the token to the aliases in ``allowed_apps`` (as fal binds them). No HTTP
here: ``POST /tokens/`` is :mod:`.token_endpoint`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["TokenClaims", "TokenError", "TokenIssuer"]

_HEADER = base64.urlsafe_b64encode(orjson.dumps({"alg": "HS256", "typ": "JWT"})).rstrip(b"=")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(ValueError):
    """Refuse a token: forged, malformed, expired, or bound to other apps."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token grants."""

    allowed_apps: tuple[str, ...]
    expires_at: float
    subject: str


class TokenIssuer:
    """Issue and verify HMAC-signed tokens with a per-process (or configured) secret."""

    def __init__(
        self,
        *,
        secret: bytes,
        max_lifetime_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._secret = secret
        self.max_lifetime_s = max_lifetime_s
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenIssuer(max_lifetime_s={self.max_lifetime_s})"

    def issue(self, allowed_apps: Sequence[str], lifetime_s: float, *, subject: str) -> str:
        """Return a token for ``allowed_apps`` valid for ``lifetime_s`` (capped)."""
        now = self._clock()
        lifetime = max(1.0, min(float(lifetime_s), self.max_lifetime_s))
        claims = {
            "allowed_apps": list(allowed_apps),
            "iat": int(now),
            "exp": round(now + lifetime, 3),
            "sub": subject,
        }
        signing_input = _HEADER + b"." + _b64(orjson.dumps(claims))
        signature = hmac.new(self._secret, signing_input, hashlib.sha256).digest()
        return (signing_input + b"." + _b64(signature)).decode("ascii")

    def verify(self, token: str, alias: str) -> TokenClaims:
        """Return the claims of ``token`` if it is genuine, unexpired and allows ``alias``."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("malformed token")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
        expected = _b64(hmac.new(self._secret, signing_input, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2].encode("ascii", "replace")):
            raise TokenError("bad token signature")
        try:
            claims: Any = orjson.loads(_unb64(parts[1]))
        except ValueError:
            raise TokenError("malformed token claims") from None
        if not isinstance(claims, dict):
            raise TokenError("malformed token claims")
        exp, apps = claims.get("exp"), claims.get("allowed_apps")
        if not isinstance(exp, int | float) or not isinstance(apps, list):
            raise TokenError("malformed token claims")
        if self._clock() >= exp:
            raise TokenError("token expired")
        if alias not in apps:
            raise TokenError(f"token is not valid for app {alias!r}")
        return TokenClaims(tuple(str(a) for a in apps), float(exp), str(claims.get("sub", "")))
