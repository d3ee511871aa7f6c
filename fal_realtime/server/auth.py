"""Check credentials on the gateway: ``Authorization: Key ...`` or a token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from .tokens import TokenError, TokenIssuer

__all__ = ["AuthResult", "Authenticator"]


class AuthResult:
    """The outcome of one check: who it is, or why not."""

    __slots__ = ("reason", "subject")

    def __init__(self, subject: str | None, reason: str = "") -> None:
        self.subject = subject
        self.reason = reason

    def __bool__(self) -> bool:
        return self.subject is not None


class Authenticator:
    """Hold the accepted keys (as digests) and verify keys and tokens in constant time."""

    def __init__(self, keys: Iterable[str], tokens: TokenIssuer, *, enabled: bool = True) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        self._tokens = tokens
        self.enabled = enabled

    def __repr__(self) -> str:
        return f"Authenticator(keys={len(self._digests)}, enabled={self.enabled})"

    def check_key(self, key: str) -> str | None:
        """Return a non-secret subject id for an accepted key, else None."""
        digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()
        found = False
        for accepted in self._digests:
            # Compare against every key so timing does not tell which one matched.
            found |= hmac.compare_digest(digest, accepted)
        if not found and self.enabled:
            return None
        return digest.hex()[:16]

    def check_key_header(self, header: str | None) -> str | None:
        """Return the subject for an ``Authorization: Key K`` header, else None.

        With auth disabled any request gets an anonymous subject.
        """
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() == "key" and value.strip():
            return self.check_key(value.strip())
        return None if self.enabled else "anonymous"

    def check(self, *, header: str | None, token: str | None, alias: str) -> AuthResult:
        """Check a WebSocket's credentials for ``alias``."""
        if not self.enabled:
            return AuthResult("anonymous")
        scheme, _, value = (header or "").partition(" ")
        value = value.strip()
        if scheme.lower() == "key" and value:
            subject = self.check_key(value)
            return AuthResult(subject, "" if subject else "invalid key")
        if scheme.lower() == "bearer" and value and not token:
            token = value
        if token:
            try:
                claims = self._tokens.verify(token, alias)
            except TokenError as exc:
                return AuthResult(None, str(exc))
            return AuthResult(claims.subject)
        return AuthResult(None, "no credentials: send 'Authorization: Key ...' or fal_jwt_token")
