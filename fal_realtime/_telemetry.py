"""OpenTelemetry metrics and traces, and the fields of the log lines (issue 21, SPEC §9).

This module owns every OpenTelemetry import; the API is optional
(``pip install 'fal-realtime[otel]'``) and everything here works, doing nothing, without
it. The core sees one small seam per connection: a :class:`ConnectionTelemetry` (or the
do-nothing :data:`OFF`), chosen once when the connection is made.

Cost, and why it is shaped this way:

- **Counters are read, not added to.** ``sent``, ``coalesced``, ``dropped``, ``results``,
  ``errors`` and ``reconnects`` are the :class:`~fal_realtime.RealtimeStats` counters each
  connection keeps anyway (plain ``int`` increments); they are exported through
  *observable* instruments whose callbacks sum them per app at collection time (every
  15-60 s for a typical reader). Per result the core calls nothing of OpenTelemetry's,
  provider or not. A connection's counts are folded into its app's totals when it
  closes (or is collected), so the sums only grow, as a counter's must.
- **Histograms need a value per event**, and the SDK's ``Histogram.record`` costs 4-10 µs
  (attribute cleaning and hashing, a lock, the exemplar filter: measured), about a tenth
  of a lock-step round trip's CPU. So ``result.latency`` is recorded only by a connection
  made while a real meter provider was configured (checked once per connection: the
  API's default is a proxy or no-op provider, which makes the seam :data:`OFF` and the
  hot path a single ``is None`` test), and, by default, for at most one result per
  connection every ``latency_sample_interval_s`` (0.1 s: the first result after each
  interval; a clock read per result otherwise). That keeps a fast stream's cost out of
  sight while a dashboard's quantiles stay true (which result is sampled does not depend
  on its latency); ``latency_sample_interval_s=0`` records every result, at the SDK's
  price. ``connect.duration`` and the spans are per socket, rare by nature. Measured
  (``python -m benchmarks --only lockstep``, two runs on a shared, loaded 2-core machine,
  round trips per second against the same client with no provider): 0.96 and 1.02 with
  the default sampling, 0.80 and 0.77 recording every result.
- ``fal_realtime.connections`` (by ``state``) is observed as well: the live connections'
  states are read at collection time.

Collection may run on another thread (a periodic reader): the registry of live
connections is guarded by a lock; the counters it reads are plain ints and dicts.

Semantic conventions followed: ``error.type`` (the SPEC §4 code), units ``s`` and
``{connection}``-style annotations, ``http.response.status_code`` and
``server.address``/``server.port`` on HTTP-over-WebSocket spans, span kind ``CLIENT``
for socket opening, token fetch and requests. None applies to a realtime app, so the
app is ``fal.app_id``; ``reason``, ``state`` and ``where`` are this library's own
attributes, named as the issue names them. No attribute, event or span status ever
holds a key, a token (the realtime URL carries one, so no URL is recorded) or a payload.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._protocol.state import ConnectionState
from ._stats import RealtimeStats
from ._version import __version__
from .errors import RealtimeError

try:  # the optional extra: fal-realtime[otel]
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError:  # pragma: no cover - exercised by test_otel_absent in a subprocess
    _metrics = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ._protocol.apps import AppId

__all__ = [
    "OFF",
    "ConnectionLog",
    "ConnectionTelemetry",
    "Telemetry",
    "WsTelemetry",
    "for_connection",
    "for_ws",
    "log_fields",
]

_SCOPE = "fal_realtime"
#: Latency buckets in seconds: a realtime round trip is 1 ms..10 s.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_MISSING = (
    "OpenTelemetry is not installed: pip install 'fal-realtime[otel]' "
    "(or opentelemetry-api) to use fal_realtime.Telemetry"
)


# -- logs -------------------------------------------------------------------------------


def log_fields(app: object, connection_id: str | None = None) -> dict[str, str]:
    """Return the ``extra`` fields of a log line about ``app`` (and one connection)."""
    fields = {"fal_app_id": str(app)}
    if connection_id is not None:
        fields["fal_connection_id"] = connection_id
    return fields


class ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose every line carries one connection's ``fal_app_id``/``fal_connection_id``.

    Fields the call passes in ``extra`` are kept (the adapter's fields win on a clash).
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**kwargs.get("extra", {}), **(self.extra or {})}
        return msg, kwargs


# -- the providers ----------------------------------------------------------------------


def _live_meter_provider(provider: Any) -> bool:
    """Tell whether ``provider`` records anything (not the API's proxy or no-op default).

    The proxy's class is private to the API; when it cannot be found the provider counts
    as live (the safe side: record, at a cost, rather than lose metrics).
    """
    return not isinstance(provider, _default_meter_providers())


@functools.lru_cache(maxsize=1)  # asked per connection: the classes are found once
def _default_meter_providers() -> tuple[type, ...]:
    internal = getattr(_metrics, "_internal", None)
    proxy = getattr(internal, "_ProxyMeterProvider", None)
    defaults: tuple[type, ...] = (_metrics.NoOpMeterProvider,)
    if isinstance(proxy, type):
        defaults += (proxy,)
    return defaults


def _live_tracer_provider(provider: Any) -> bool:
    return not isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider))


class Telemetry:
    """Where connections report: an OpenTelemetry meter provider and tracer provider.

    Pass one to :func:`fal_realtime.connect` / :func:`fal_realtime.ws` as ``telemetry=``
    to use providers of your own (tests, or several exporters in one process); without
    it, connections use the global providers (``opentelemetry.metrics`` and ``.trace``'s
    ``set_*_provider``) when one is configured, and nothing otherwise. The instruments
    are made once per meter provider: any number of ``Telemetry`` objects may share one.

    Args:
        meter_provider: where metrics go; None: the global one.
        tracer_provider: where spans go; None: the global one.
        latency_sample_interval_s: record ``fal_realtime.result.latency`` for at most one
            result per connection per this many seconds (the first after each interval);
            0: every result (the SDK's recording costs some µs each).

    Raises:
        ImportError: the OpenTelemetry API is not installed.
    """

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        latency_sample_interval_s: float = 0.1,
    ) -> None:
        if _metrics is None:
            raise ImportError(_MISSING)
        interval = latency_sample_interval_s
        if not isinstance(interval, int | float) or isinstance(interval, bool) or interval < 0:
            raise ValueError(
                "latency_sample_interval_s must be a number of seconds >= 0, "
                f"got {latency_sample_interval_s!r}"
            )
        self.latency_sample_interval_s = float(latency_sample_interval_s)
        meter_provider = meter_provider or _metrics.get_meter_provider()
        tracer_provider = tracer_provider or _trace.get_tracer_provider()
        self._providers: tuple[object, object] = (meter_provider, tracer_provider)
        self.metrics_on = _live_meter_provider(meter_provider)
        self.traces_on = _live_tracer_provider(tracer_provider)
        self.tracer = tracer_provider.get_tracer(_SCOPE, __version__)
        #: The instruments and the registry of connections (one per meter provider).
        self.meters = _meters_for(meter_provider)

    def __repr__(self) -> str:
        return f"<Telemetry metrics={self.metrics_on} traces={self.traces_on}>"

    @property
    def on(self) -> bool:
        """Tell whether anything is recorded at all."""
        return self.metrics_on or self.traces_on


class _Meters:
    """The instruments of one meter provider, and the connections they read.

    Made once per provider (:func:`_meters_for`): the SDK keeps the first of two
    instruments of one name, so a second set would never be read.
    """

    def __init__(self, meter: Any) -> None:
        self._lock = threading.RLock()
        # The live connections (weakly: one never closed is folded when collected) and
        # the counts of the ones that ended, per app.
        self._live: weakref.WeakSet[ConnectionTelemetry] = weakref.WeakSet()
        self._ended: dict[str, RealtimeStats] = {}
        self._states_seen: set[tuple[str, str]] = set()
        counters: tuple[tuple[str, str, str, Callable[[RealtimeStats], Iterable[Any]]], ...] = (
            ("sent", "{message}", "Inputs handed to a socket", _sent),
            (
                "coalesced",
                "{message}",
                "Inputs superseded by a newer one before they went out (latest wins); "
                "where=link: they waited for a slow uplink, where=interval: for the throttle",
                _coalesced,
            ),
            ("dropped", "{message}", "Inputs or results dropped, by reason", _dropped),
            ("results", "{result}", "Results received", _results),
            ("errors", "{error}", "Errors reported to on_error, by error.type", _errors),
            ("reconnects", "{reconnect}", "Sockets reopened after one was lost", _reconnects),
        )
        for name, unit, description, read in counters:
            meter.create_observable_counter(
                f"fal_realtime.{name}",
                callbacks=[self._observer(read)],
                unit=unit,
                description=description,
            )
        meter.create_observable_up_down_counter(
            "fal_realtime.connections",
            callbacks=[self._observe_connections],
            unit="{connection}",
            description="Realtime connections, by state",
        )
        self.result_latency = _seconds(
            meter,
            "fal_realtime.result.latency",
            "From an input handed to the socket to the next result",
        )
        self.connect_duration = _seconds(
            meter,
            "fal_realtime.connect.duration",
            "Opening one socket: token fetch and WebSocket handshake",
        )
        self.ws_requests = meter.create_counter(
            "fal_realtime.ws.requests",
            unit="{request}",
            description="HTTP-over-WebSocket responses read, by status",
        )
        self.ws_time_to_first_byte = _seconds(
            meter,
            "fal_realtime.ws.time_to_first_byte",
            "HTTP over WebSockets: from the request sent to its first body byte",
        )

    # -- the registry of connections -----------------------------------------------------

    def register(self, conn: ConnectionTelemetry) -> Callable[[], None]:
        """Read ``conn``'s counters from now on; return what folds them in (once)."""
        with self._lock:
            self._live.add(conn)
        return weakref.finalize(conn, self._fold, conn.app_id, conn.stats)

    def retire(self, conn: ConnectionTelemetry) -> None:
        """``conn`` ended: fold its counts into its app's totals."""
        with self._lock:  # one step: a collection sees it live or folded, never both
            self._live.discard(conn)
            conn.finalizer()

    def _fold(self, app_id: str, stats: RealtimeStats) -> None:
        with self._lock:
            total = self._ended.get(app_id)
            if total is None:
                total = self._ended[app_id] = RealtimeStats()
            total.sent += stats.sent
            total.coalesced += stats.coalesced
            total.superseded_at_link += stats.superseded_at_link
            total.results += stats.results
            total.errors += stats.errors
            total.reconnects += stats.reconnects
            for reason, count in list(stats.dropped.items()):
                total.drop(reason, count)
            for code, count in list(stats.errors_by_code.items()):
                total.errors_by_code[code] = total.errors_by_code.get(code, 0) + count

    def _snapshot(self) -> tuple[list[ConnectionTelemetry], list[tuple[str, RealtimeStats]]]:
        with self._lock:
            return list(self._live), list(self._ended.items())

    def _observer(
        self, read: Callable[[RealtimeStats], Iterable[tuple[tuple[tuple[str, str], ...], int]]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            live, ended = self._snapshot()
            sums: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
            for app_id, stats in [*ended, *((c.app_id, c.stats) for c in live)]:
                for attrs, value in read(stats):
                    key = (app_id, attrs)
                    sums[key] = sums.get(key, 0) + value
            return [
                Observation(value, {"fal.app_id": app_id, **dict(attrs)})
                for (app_id, attrs), value in sums.items()
            ]

        return observe

    def _observe_connections(self, options: CallbackOptions) -> Iterable[Observation]:
        live, _ = self._snapshot()
        counts: dict[tuple[str, str], int] = {}
        for conn in live:
            key = (conn.app_id, conn.read_state().value)
            counts[key] = counts.get(key, 0) + 1
        with self._lock:
            self._states_seen.update(counts)
            seen = list(self._states_seen)
        # A state that emptied reports 0 (not silence): the gauge goes down to it.
        return [
            Observation(counts.get(key, 0), {"fal.app_id": key[0], "state": key[1]}) for key in seen
        ]


def _seconds(meter: Any, name: str, description: str) -> Any:
    """Return a histogram in seconds with buckets of 1 ms to 10 s.

    The buckets are advice (opentelemetry-api 1.23+); an older API gets the SDK's
    defaults, and a View may override either.
    """
    try:
        return meter.create_histogram(
            name,
            unit="s",
            description=description,
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
        )
    except TypeError:  # opentelemetry-api < 1.23
        return meter.create_histogram(name, unit="s", description=description)


_meters_lock = threading.Lock()
_meters: weakref.WeakKeyDictionary[Any, _Meters] = weakref.WeakKeyDictionary()


def _meters_for(provider: Any) -> _Meters:
    """Return the instruments of ``provider``, made on first use."""
    with _meters_lock:
        meters = _meters.get(provider)
        if meters is None:
            meters = _meters[provider] = _Meters(provider.get_meter(_SCOPE, __version__))
        return meters


# What each observable counter reads from a connection's stats: (attributes, value) pairs.
_NONE: tuple[tuple[str, str], ...] = ()


def _sent(s: RealtimeStats) -> Iterable[tuple[tuple[tuple[str, str], ...], int]]:
    return ((_NONE, s.sent),)


def _coalesced(s: RealtimeStats) -> Iterable[tuple[tuple[tuple[str, str], ...], int]]:
    link = s.superseded_at_link
    return (((("where", "link"),), link), ((("where", "interval"),), s.coalesced - link))


def _dropped(s: RealtimeStats) -> Iterable[tuple[tuple[tuple[str, str], ...], int]]:
    return [((("reason", reason),), n) for reason, n in list(s.dropped.items())]


def _results(s: RealtimeStats) -> Iterable[tuple[tuple[tuple[str, str], ...], int]]:
    return ((_NONE, s.results),)


def _errors(s: RealtimeStats) -> Iterable[tuple[tuple[tuple[str, str], ...], int]]:
    return [((("error.type", code),), n) for code, n in list(s.errors_by_code.items())]


def _reconnects(s: RealtimeStats) -> Iterable[tuple[tuple[tuple[str, str], ...], int]]:
    return ((_NONE, s.reconnects),)


# -- the global providers ------------------------------------------------------------------

_global: Telemetry | None = None


def _default() -> Telemetry | None:
    """Return the Telemetry of the global providers when one records, else None (cheap)."""
    global _global
    if _metrics is None:
        return None
    meter_provider = _metrics.get_meter_provider()
    tracer_provider = _trace.get_tracer_provider()
    if not (_live_meter_provider(meter_provider) or _live_tracer_provider(tracer_provider)):
        return None
    current = _global
    if current is None or current._providers != (meter_provider, tracer_provider):
        # Global providers are set once per process: this runs at most twice or so.
        current = _global = Telemetry(
            meter_provider=meter_provider, tracer_provider=tracer_provider
        )
    return current


def _resolve(telemetry: Telemetry | None) -> Telemetry | None:
    if telemetry is None:
        return _default()
    if not isinstance(telemetry, Telemetry):
        raise TypeError(
            "telemetry must be a fal_realtime.Telemetry(meter_provider=..., tracer_provider=...), "
            f"not {type(telemetry).__name__}"
        )
    return telemetry if telemetry.on else None


# -- one realtime connection ---------------------------------------------------------------


class NoTelemetry:
    """The seam when nothing records: every method does nothing, ``latency`` is None."""

    __slots__ = ()

    #: Records one result's latency (None: not recorded; the hot path tests this once).
    latency: Callable[[float], None] | None = None

    @contextlib.contextmanager
    def opening(self) -> Iterator[Opening]:
        """Span and time opening one socket (token fetch and handshake)."""
        yield Opening()

    @contextlib.contextmanager
    def fetching_token(self) -> Iterator[None]:
        """Span the token fetch (a child of the opening)."""
        yield

    def state(self, state: ConnectionState) -> None:
        """The connection entered ``state`` (reconnect outages begin and end here)."""

    def error(self, error: RealtimeError) -> None:
        """An error went to on_error (remembered for the outage span's end)."""

    def retrying(self, error: RealtimeError, delay_s: float) -> None:
        """An attempt failed and the next is due in ``delay_s``."""

    def retire(self) -> None:
        """The connection ended: fold its counts into its app's totals."""


class Opening:
    """One socket being opened: a span and a clock; :meth:`failed` marks it failed."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: RealtimeError | None = None

    def failed(self, error: RealtimeError) -> None:
        """The opening failed with ``error``."""
        self.error = error


OFF = NoTelemetry()


def _fail_span(span: Span, error: RealtimeError) -> None:
    span.set_attribute("error.type", error.code)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, error.message))


class ConnectionTelemetry(NoTelemetry):
    """One realtime connection's seam into a :class:`Telemetry` (see the module docstring)."""

    __slots__ = (
        "__weakref__",
        "_attrs",
        "_outage",
        "_span_attrs",
        "_telemetry",
        "app_id",
        "finalizer",
        "last_error",
        "latency",
        "read_state",
        "stats",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        app_id: str,
        connection_id: str,
        stats: RealtimeStats,
        state: Callable[[], ConnectionState],
    ) -> None:
        self._telemetry = telemetry
        self.app_id = app_id
        self.stats = stats
        self.read_state = state
        self._attrs = {"fal.app_id": app_id}
        self._span_attrs = {"fal.app_id": app_id, "fal.connection_id": connection_id}
        self._outage: Span | None = None
        self.last_error: RealtimeError | None = None
        self.latency = None
        if telemetry.metrics_on:
            self.latency = _recorder(
                telemetry.meters.result_latency, self._attrs, telemetry.latency_sample_interval_s
            )
        self.finalizer = telemetry.meters.register(self)

    @contextlib.contextmanager
    def opening(self) -> Iterator[Opening]:
        telemetry, opening = self._telemetry, Opening()
        parent = _trace.set_span_in_context(self._outage) if self._outage is not None else None
        started = time.perf_counter()
        with telemetry.tracer.start_as_current_span(
            "fal_realtime.connect",
            context=parent,
            kind=_trace.SpanKind.CLIENT,
            attributes=self._span_attrs,
            record_exception=False,
        ) as span:
            try:
                yield opening
            finally:
                attrs = self._attrs
                if opening.error is not None:
                    _fail_span(span, opening.error)
                    attrs = {**attrs, "error.type": opening.error.code}
                if telemetry.metrics_on:
                    telemetry.meters.connect_duration.record(time.perf_counter() - started, attrs)

    @contextlib.contextmanager
    def fetching_token(self) -> Iterator[None]:
        with self._telemetry.tracer.start_as_current_span(
            "fal_realtime.token",
            kind=_trace.SpanKind.CLIENT,
            attributes=self._span_attrs,
            record_exception=False,
        ) as span:
            try:
                yield
            except RealtimeError as exc:
                _fail_span(span, exc)
                raise

    def state(self, state: ConnectionState) -> None:
        outage = self._outage
        if state is ConnectionState.RECONNECTING:
            if outage is None:
                self._outage = self._telemetry.tracer.start_span(
                    "fal_realtime.reconnect", attributes=self._span_attrs
                )
            return
        if outage is None or state is ConnectionState.CONNECTING:
            return
        self._outage = None
        outage.set_attribute("fal_realtime.outcome", state.value)
        if state is ConnectionState.FAILED and self.last_error is not None:
            _fail_span(outage, self.last_error)
        outage.end()

    def error(self, error: RealtimeError) -> None:
        self.last_error = error

    def retrying(self, error: RealtimeError, delay_s: float) -> None:
        if self._outage is not None:
            self._outage.add_event(
                "retry", {"error.type": error.code, "fal_realtime.retry.delay": delay_s}
            )

    def retire(self) -> None:
        outage, self._outage = self._outage, None
        if outage is not None:
            outage.set_attribute("fal_realtime.outcome", "closed")
            outage.end()
        self._telemetry.meters.retire(self)


def _recorder(
    histogram: Any,
    attrs: Mapping[str, str],
    interval_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[float], None]:
    """Return what records one result's latency: every one, or one per ``interval_s``."""
    record = histogram.record
    if not interval_s:

        def every(seconds: float) -> None:
            record(seconds, attrs)

        return every
    due = -math.inf

    def sampled(seconds: float) -> None:
        nonlocal due
        now = clock()
        if now >= due:
            due = now + interval_s
            record(seconds, attrs)

    return sampled


def for_connection(
    telemetry: Telemetry | None,
    *,
    app_id: str,
    connection_id: str,
    stats: RealtimeStats,
    state: Callable[[], ConnectionState],
) -> NoTelemetry:
    """Return a connection's seam: :data:`OFF` unless a provider records (checked now)."""
    resolved = _resolve(telemetry)
    if resolved is None:
        return OFF
    return ConnectionTelemetry(
        resolved, app_id=app_id, connection_id=connection_id, stats=stats, state=state
    )


# -- HTTP over WebSockets ------------------------------------------------------------------


class WsTelemetry:
    """One HTTP-over-WebSocket connection's requests: a span each, a count, time to first byte."""

    __slots__ = ("_attrs", "_server", "_telemetry")

    def __init__(self, telemetry: Telemetry, app: AppId, server: tuple[str | None, int | None]):
        self._telemetry = telemetry
        self._attrs = {"fal.app_id": str(app)}
        host, port = server
        self._server: dict[str, str | int] = {}
        if host:
            self._server["server.address"] = host
        if port:
            self._server["server.port"] = port

    def response(self, status: int, error: RealtimeError | None = None) -> None:
        """Count one response read (by ``recv``/``stream``)."""
        if self._telemetry.metrics_on:
            self._telemetry.meters.ws_requests.add(1, self._status_attrs(status, error))

    def _status_attrs(self, status: int | None, error: RealtimeError | None) -> dict[str, Any]:
        attrs: dict[str, Any] = dict(self._attrs)
        if status is not None:
            attrs["http.response.status_code"] = status
        if error is not None:
            attrs["error.type"] = error.code
        return attrs

    @contextlib.contextmanager
    def request(self) -> Iterator[RequestRecord]:
        """Span one ``request()``; count it and record its time to first byte."""
        telemetry = self._telemetry
        record = RequestRecord()
        with telemetry.tracer.start_as_current_span(
            "fal_realtime.ws.request",
            kind=_trace.SpanKind.CLIENT,
            attributes={**self._attrs, **self._server},
            record_exception=False,
        ) as span:
            try:
                yield record
            except RealtimeError as exc:
                record.error = exc
                raise
            finally:
                if record.status is not None:
                    span.set_attribute("http.response.status_code", record.status)
                if record.error is not None:
                    _fail_span(span, record.error)
                if telemetry.metrics_on and (record.status is not None or record.error):
                    attrs = self._status_attrs(record.status, record.error)
                    telemetry.meters.ws_requests.add(1, attrs)
                    if record.time_to_first_byte is not None:
                        telemetry.meters.ws_time_to_first_byte.record(
                            record.time_to_first_byte, self._attrs
                        )


class RequestRecord:
    """What one request's span and metrics are told: status, error, time to first byte."""

    __slots__ = ("error", "status", "time_to_first_byte")

    def __init__(self) -> None:
        self.status: int | None = None
        self.error: RealtimeError | None = None
        self.time_to_first_byte: float | None = None


def for_ws(
    telemetry: Telemetry | None, app: AppId, server: tuple[str | None, int | None]
) -> WsTelemetry | None:
    """Return an HTTP-over-WebSocket connection's seam, or None when nothing records."""
    resolved = _resolve(telemetry)
    return None if resolved is None else WsTelemetry(resolved, app, server)
