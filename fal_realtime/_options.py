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
from ._validate import check_count, check_seconds
from .errors import UNAUTHORIZED, UnauthorizedError

__all__ = ["RealtimeOptions", "retry_settings", "server_buffering"]

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
    # What the user passed that the fields above hold in another form (compared by
    # differing(); the token source and the codec are built from them).
    use_jwt: bool = True
    token_provider: TokenProvider | None = None
    token_expiration: int = 120
    encoding: Encoding = "msgpack"
    encode_message: Callable[[Any], bytes] | None = None
    decode_message: Callable[[bytes], Any] | None = None
    #: ``record=PATH`` as given (the recorder is made with the connection, see with_recorder).
    record: str | os.PathLike[str] | None = None
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
        check_seconds("throttle_interval", throttle_interval, zero_ok=True)
        if max_buffering is not None:
            validate_max_buffering(max_buffering)
        check_count("max_frame_bytes", max_frame_bytes, minimum=1)
        check_seconds("heartbeat_s", heartbeat_s, zero_ok=False, none_ok=True)
        check_count("max_backlog", max_backlog, minimum=1)
        check_count("max_pending", max_pending, minimum=1)
        check_seconds("open_timeout_s", open_timeout_s, zero_ok=False)
        check_seconds("close_timeout_s", close_timeout_s, zero_ok=True)
        check_count("token_expiration", token_expiration, minimum=1)
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
        extra_query = _NO_QUERY
        url: str | None = None
        headers: Mapping[str, str] = _NO_QUERY
        if tokens is None:
            url = realtime_url(
                parsed,
                base=base,
                path=path,
                max_buffering=server_buffering(max_buffering, coalesce),
                extra_query=extra_query,
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
            url=url,
            headers=headers,
            retry=retry_settings(policy),
            label=str(parsed),
            use_jwt=use_jwt,
            token_provider=token_provider,
            token_expiration=token_expiration,
            encoding=encoding,
            encode_message=encode_message,
            decode_message=decode_message,
            record=record,
            telemetry=telemetry,
        )

    def with_recorder(self) -> RealtimeOptions:
        """Return these options with the recorder ``record=PATH`` asks for (its file begun)."""
        if self.record is None:
            return self
        recorder = Recorder(
            self.record, protocol="realtime", app=str(self.app), path_option=self.path
        )
        return self._replace(recorder=recorder)

    def with_query(self, query: Mapping[str, str]) -> RealtimeOptions:
        """Return these options with ``query`` added to every socket's URL (a testing hook)."""
        extra_query = MappingProxyType({**self.extra_query, **query})
        url = self.url
        if url is not None:
            url = realtime_url(
                self.app,
                base=self.url_base,
                path=self.path,
                max_buffering=self.server_buffering,
                extra_query=extra_query,
            )
        return self._replace(extra_query=extra_query, url=url)

    @property
    def server_buffering(self) -> int | None:
        """Return the ``max_buffering`` the sockets ask the server for."""
        return server_buffering(self.max_buffering, self.coalesce)

    def differing(self, other: RealtimeOptions) -> list[str]:
        """Name the ``connect()`` options whose values differ between ``self`` and ``other``."""
        return [
            option
            for field, option in _COMPARED
            if (mine := getattr(self, field)) is not (theirs := getattr(other, field))
            and mine != theirs
        ]


# connect()'s options as the fields that hold them: (field, option). The app is compared
# on its own; the callbacks are not compared (replacing them is what a key is for).
_COMPARED = (
    ("throttle_interval_s", "throttle_interval"),
    ("coalesce", "coalesce"),
    ("max_pending", "max_pending"),
    ("max_backlog", "max_backlog"),
    ("max_buffering", "max_buffering"),
    ("path", "path"),
    ("key", "key"),
    ("token_provider", "token_provider"),
    ("token_expiration", "token_expiration"),
    ("use_jwt", "use_jwt"),
    ("policy", "reconnect"),
    ("encoding", "encoding"),
    ("encode_message", "encode_message"),
    ("decode_message", "decode_message"),
    ("url_base", "base_url"),
    ("heartbeat_s", "heartbeat_s"),
    ("max_frame_bytes", "max_frame_bytes"),
    ("open_timeout_s", "open_timeout_s"),
    ("close_timeout_s", "close_timeout_s"),
    ("ssl_context", "ssl_context"),
    ("session", "session"),
    ("record", "record"),
    ("extra_query", "query"),
)


def server_buffering(max_buffering: int | None, coalesce: bool) -> int | None:
    """Return the ``max_buffering`` to ask the server for: the user's, else 1 when coalescing.

    Latest wins at the server too: when the model is slower than the inputs, it keeps
    only the newest pending one. Without coalescing, nothing is asked (fal's default).
    """
    if max_buffering is not None:
        return max_buffering
    return 1 if coalesce else None


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
