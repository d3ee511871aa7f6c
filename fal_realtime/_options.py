"""A realtime connection's options: one frozen record, validated and built by ``connect()``."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import aiohttp

from ._auth import MISSING_KEY_MESSAGE, TokenProvider, TokenSource, resolve_key
from ._keepalive import KeepAlive
from ._policy import ReconnectPolicy
from ._protocol.apps import (
    AppId,
    parse_app,
    realtime_url,
    resolve_base,
    token_url,
    validate_max_buffering,
)
from ._protocol.codecs import Codec, Encoding, make_codec
from ._protocol.session import RetrySettings
from ._recorder import Recorder
from ._telemetry import Telemetry
from .errors import UNAUTHORIZED, UnauthorizedError

__all__ = ["RealtimeOptions", "retry_settings"]

_NO_QUERY: Mapping[str, str] = MappingProxyType({})


class RealtimeOptions(NamedTuple):
    """Everything a :class:`~fal_realtime.RealtimeConnection` was asked to be (see ``connect``).

    A named tuple rather than a frozen dataclass: as frozen, but made in one step (a
    frozen dataclass sets each field through ``object.__setattr__``, and one of these is
    made per connection).
    """

    app: AppId
    url_base: str
    path: str
    max_buffering: int | None
    extra_query: Mapping[str, str]
    key: str | None
    tokens: TokenSource | None
    codec: Codec
    throttle_interval_s: float
    coalesce: bool
    max_pending: int
    max_backlog: int
    policy: ReconnectPolicy | None
    heartbeat_s: float | None
    max_frame_bytes: int
    open_timeout_s: float
    close_timeout_s: float
    ssl_context: ssl.SSLContext | None
    connection_key: str | None
    session: aiohttp.ClientSession | None
    #: The socket's URL when it needs no token (None when the connection uses tokens).
    url: str | None
    #: The handshake's headers (the ``Key`` header, unless the connection uses tokens).
    headers: Mapping[str, str]
    #: The session machine's view of ``policy``.
    retry: RetrySettings | None
    #: ``str(app)``, for task names.
    label: str
    #: Writes what the connection sends and receives (``record=PATH``), or None.
    recorder: Recorder | None = None
    #: Where metrics and spans go (None: the global OpenTelemetry providers, if any).
    telemetry: Telemetry | None = None

    def __repr__(self) -> str:  # never the key
        return f"RealtimeOptions(app={str(self.app)!r}, url_base={self.url_base!r})"

    @classmethod
    def build(
        cls,
        app: str,
        *,
        throttle_interval: float,
        max_buffering: int | None,
        max_frame_bytes: int,
        max_backlog: int,
        reconnect: bool | ReconnectPolicy | dict[str, Any],
        encoding: Encoding,
        encode_message: Callable[[Any], bytes] | None,
        decode_message: Callable[[bytes], Any] | None,
        base_url: str | None,
        key: str | None,
        token_provider: TokenProvider | None,
        token_expiration: int,
        use_jwt: bool,
        query: Mapping[str, str] | None,
        path: str,
        coalesce: bool,
        max_pending: int,
        heartbeat_s: float | None,
        open_timeout_s: float,
        close_timeout_s: float,
        ssl_context: ssl.SSLContext | None,
        connection_key: str | None,
        session: aiohttp.ClientSession | None,
        record: str | os.PathLike[str] | None = None,
        telemetry: Telemetry | None = None,
    ) -> RealtimeOptions:
        """Validate ``connect()``'s arguments (before any I/O) and build the record.

        Raises:
            ValueError, TypeError: a bad argument.
            UnauthorizedError: no key and no token provider.
        """
        parsed = parse_app(app)
        if not isinstance(throttle_interval, int | float) or throttle_interval < 0:
            raise ValueError(
                f"throttle_interval must be a number of seconds >= 0, got {throttle_interval!r}"
            )
        if max_buffering is not None:
            validate_max_buffering(max_buffering)
        elif coalesce:
            # Latest wins at the server too: when the model is slower than the inputs, it
            # keeps only the newest pending one (the user's own max_buffering wins).
            max_buffering = 1
        if max_frame_bytes <= 0:
            raise ValueError(f"max_frame_bytes must be > 0, got {max_frame_bytes}")
        if heartbeat_s is not None:
            KeepAlive(heartbeat_s)  # validates it
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be >= 1, got {max_backlog}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        policy = ReconnectPolicy.from_option(reconnect)
        codec = make_codec(encoding, encode_message=encode_message, decode_message=decode_message)
        env = os.environ
        base = resolve_base("realtime", base_url, env)
        resolved_key = resolve_key(key, env)
        if token_provider is None and not resolved_key:
            raise UnauthorizedError(UNAUTHORIZED, MISSING_KEY_MESSAGE)
        tokens: TokenSource | None = None
        if use_jwt or token_provider is not None:
            tokens = TokenSource(
                app_alias=parsed.alias,
                app_id=str(parsed),
                token_url=token_url(base, env),
                key=resolved_key,
                token_provider=token_provider,
                token_expiration_s=float(token_expiration),
                ssl_context=ssl_context,
            )
        extra_query = MappingProxyType(dict(query)) if query else _NO_QUERY
        url: str | None = None
        headers: Mapping[str, str] = _NO_QUERY
        if tokens is None:
            url = realtime_url(
                parsed, base=base, path=path, max_buffering=max_buffering, extra_query=extra_query
            )
            if resolved_key:
                headers = {"Authorization": f"Key {resolved_key}"}
        return cls(
            app=parsed,
            url_base=base,
            max_buffering=max_buffering,
            extra_query=extra_query,
            key=resolved_key,
            tokens=tokens,
            codec=codec,
            throttle_interval_s=float(throttle_interval),
            max_backlog=max_backlog,
            policy=policy,
            max_frame_bytes=max_frame_bytes,
            path=path,
            coalesce=coalesce,
            max_pending=max_pending,
            heartbeat_s=heartbeat_s,
            open_timeout_s=open_timeout_s,
            close_timeout_s=close_timeout_s,
            ssl_context=ssl_context,
            connection_key=connection_key,
            session=session,
            recorder=None
            if record is None
            else Recorder(record, protocol="realtime", app=app, path_option=path),
            url=url,
            headers=headers,
            retry=retry_settings(policy),
            label=str(parsed),
            telemetry=telemetry,
        )


@functools.lru_cache(maxsize=64)  # policies are frozen: equal ones share their settings
def retry_settings(policy: ReconnectPolicy | None) -> RetrySettings | None:
    """Return the session machine's view of a reconnect policy (None: never reconnect)."""
    if policy is None:
        return None
    return RetrySettings(
        stop=policy.stop_strategy(),
        wait=policy.wait_strategy(),
        stable_after_s=policy.stable_after_s,
    )
