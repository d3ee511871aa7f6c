"""OBS: OpenTelemetry metrics and spans, and searchable logs (SPEC §9, issue 21).

Every test passes its own SDK providers (``connect(..., telemetry=Telemetry(...))``):
the global providers can be set once per process, so no test touches them. The
faulty session runs against the local gateway through the fault proxy: results, a
result dropped for a slow consumer, a RATE_LIMITED answer, a cut and its reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import fal_realtime
from fal_realtime import ConnectionState, RealtimeError, Telemetry, _telemetry
from fal_realtime.server import Gateway, RunningGateway
from fal_realtime.server.proxy import FaultProxy
from fal_realtime.testing import connect_with_query

from .child_tools import finish, start
from .conftest import KEY, MS
from .gateway_tools import eventually

APP = "fal-ai/echo"
#: Attribute names as keyword arguments of Otel.value.
_ATTRS = {"fal_app_id": "fal.app_id", "error_type": "error.type"}


class Otel:
    """Per-test SDK providers with in-memory readers, and the Telemetry over them."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self._series: dict[tuple[str, frozenset[Any]], tuple[dict[str, Any], Any]] = {}
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))
        # Every result's latency (the default samples one per 0.1 s: see OBS-10).
        self.telemetry = Telemetry(
            meter_provider=self.meters, tracer_provider=self.tracers, latency_sample_interval_s=0
        )

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Collect now: metric name -> [(attributes, point)], each series' latest point.

        Series collected before are kept: SDKs before 1.2x leave out a cumulative
        histogram that recorded nothing since the last collection.
        """
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes)
                        self._series[(metric.name, frozenset(attrs.items()))] = (attrs, point)
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        for (name, _), series in self._series.items():
            out.setdefault(name, []).append(series)
        return out

    def value(self, name: str, **attrs: str) -> Any:
        """Return the sum of the points of ``name`` whose attributes include ``attrs``."""
        found = [
            p.value
            for a, p in self.points().get(name, [])
            if all(a.get(_ATTRS.get(k, k)) == v for k, v in attrs.items())
        ]
        return sum(found) if found else None

    def finished(self, name: str) -> list[ReadableSpan]:
        """Return the finished spans called ``name``."""
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def close(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    """SDK providers of this test's own."""
    providers = Otel()
    try:
        yield providers
    finally:
        providers.close()


@dataclass
class Session:
    """What a faulty session saw, and the secrets that must never show."""

    conn: fal_realtime.RealtimeConnection
    results: list[Any] = field(default_factory=list)
    errors: list[RealtimeError] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)


async def faulty_session(proxy: FaultProxy, telemetry: Telemetry | None) -> Session:
    """Run results, a slow-consumer drop, a RATE_LIMITED, a cut and reconnect; then close.

    The reconnect is refused for a while first: at least one attempt fails and is retried.

    Every 4th input of a session is answered RATE_LIMITED (``fal_faults``); a callback
    that raises once puts a CALLBACK_ERROR and a logged traceback in the session too.
    """
    hold: list[asyncio.Event] = []
    results: list[Any] = []
    errors: list[RealtimeError] = []
    raised: list[bool] = []

    async def on_result(value: Any) -> None:
        results.append(value)
        if hold:
            await hold[0].wait()
        if not raised:
            raised.append(True)
            raise ValueError("a callback bug")

    conn = await connect_with_query(
        APP,
        {"fal_faults": "rate_limit_every=4"},
        on_result=on_result,
        on_error=errors.append,
        base_url=proxy.ws_url,
        key=KEY,
        throttle_interval=0,
        coalesce=False,
        max_backlog=1,
        telemetry=telemetry,
    )
    session = Session(conn, results, errors)
    async with conn:
        session.tokens.add(conn._driver._token or "")
        # Inputs 1-3: the first result holds the callback; the second waits behind it
        # and is dropped when the third arrives (max_backlog=1).
        hold.append(asyncio.Event())
        for v in (1, 2, 3):
            await conn.send({"v": v})
        await eventually(lambda: conn.stats.dropped.get("slow_consumer") == 1)
        hold.pop().set()
        await eventually(lambda: len(results) == 2)
        await conn.send({"v": 4})  # the 4th: RATE_LIMITED
        await eventually(lambda: any(e.code == "RATE_LIMITED" for e in errors))
        proxy.refuse_for(200 * MS)
        assert proxy.cut() == 1
        await eventually(lambda: conn.stats.reconnects == 1 and conn.state is ConnectionState.OPEN)
        assert proxy.refused >= 1
        session.tokens.add(conn._driver._token or "")
        await conn.send({"v": 5})
        await eventually(lambda: len(results) == 3)
    session.tokens.discard("")
    assert session.tokens, "the session used a token"
    return session


def _secrets(session: Session) -> list[str]:
    return [KEY, KEY.split(":")[1], *session.tokens]


async def test_obs_1_metrics_of_a_faulty_session(proxy: FaultProxy, otel: Otel) -> None:
    """OBS-1: counters, histograms and connections by state of a faulty session, per app."""
    session = await faulty_session(proxy, otel.telemetry)
    stats = session.conn.stats
    assert otel.value("fal_realtime.results", fal_app_id=APP) == stats.results == 4
    assert otel.value("fal_realtime.sent", fal_app_id=APP) == stats.sent == 5
    assert otel.value("fal_realtime.dropped", reason="slow_consumer") == 1
    assert otel.value("fal_realtime.errors", error_type="RATE_LIMITED") == 1
    assert otel.value("fal_realtime.errors", error_type="CALLBACK_ERROR") == 1
    assert otel.value("fal_realtime.reconnects", fal_app_id=APP) == 1
    assert otel.value("fal_realtime.coalesced", fal_app_id=APP) == stats.coalesced == 0
    # The connection closed: its counts stay in its app's totals; it counts in no state.
    assert not any(p.value for _, p in otel.points().get("fal_realtime.connections", []))
    latency = otel.points()["fal_realtime.result.latency"]
    assert sum(p.count for _, p in latency) >= 2  # after input 1 and input 5 at least
    connects = otel.points()["fal_realtime.connect.duration"]
    assert sum(p.count for a, p in connects if "error.type" not in a) == 2
    assert sum(p.count for a, p in connects if a.get("error.type") == "CONNECTION_LOST") >= 1
    for name, points in otel.points().items():
        for attrs, _ in points:
            assert attrs.get("fal.app_id") == APP, name
            for secret in _secrets(session):
                assert all(secret not in str(v) for v in attrs.values()), name


async def test_obs_2_connections_by_state_while_open(running: RunningGateway, otel: Otel) -> None:
    """OBS-2: fal_realtime.connections counts live connections by state, per app."""
    # Two Telemetry objects over one meter provider share its instruments.
    other = Telemetry(meter_provider=otel.meters, tracer_provider=otel.tracers)
    opened = [
        await fal_realtime.connect(APP, base_url=running.ws_url, key=KEY, telemetry=telemetry)
        for telemetry in (otel.telemetry, other)
    ]
    assert otel.value("fal_realtime.connections", state="open", fal_app_id=APP) == 2
    await opened[0].close()
    assert otel.value("fal_realtime.connections", state="open") == 1
    await opened[1].close()
    assert otel.value("fal_realtime.connections", state="open") == 0


async def test_obs_3_spans_of_a_faulty_session(proxy: FaultProxy, otel: Otel) -> None:
    """OBS-3: a span per socket opened (token fetch its child), one per outage, none per result."""
    session = await faulty_session(proxy, otel.telemetry)
    connects = otel.finished("fal_realtime.connect")
    tokens = otel.finished("fal_realtime.token")
    (outage,) = otel.finished("fal_realtime.reconnect")
    assert len(connects) == len(tokens) >= 3  # the first, the refused ones, the reopening
    for connect, token in zip(connects, tokens, strict=True):
        assert token.parent is not None and token.parent.span_id == connect.context.span_id
        assert connect.attributes is not None
        assert connect.attributes["fal.app_id"] == APP
        assert connect.attributes["fal.connection_id"] == session.conn.id
    first, *refused, reopened = connects
    for span in (first, reopened):
        assert span.status.status_code is not StatusCode.ERROR
    for span in refused:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == "CONNECTION_LOST"
    assert outage.attributes is not None and outage.attributes["fal_realtime.outcome"] == "open"
    assert len([e for e in outage.events if e.name == "retry"]) == len(refused)
    # The attempts happened inside the outage.
    for span in (*refused, reopened):
        assert span.parent is not None and span.parent.span_id == outage.context.span_id
    assert len(otel.spans.get_finished_spans()) == 2 * len(connects) + 1  # none per result
    for span in otel.spans.get_finished_spans():
        text = repr((span.attributes, span.events, span.status, span.name))
        for secret in _secrets(session):
            assert secret not in text


async def test_obs_4_failed_opening_carries_its_error_code(
    running: RunningGateway, otel: Otel
) -> None:
    """OBS-4: a refused key: the token span and the connect span fail with error.type."""
    with pytest.raises(RealtimeError) as caught:
        await fal_realtime.connect(
            APP, base_url=running.ws_url, key="bad-id:bad-secret", telemetry=otel.telemetry
        )
    code = caught.value.code
    assert code == "UNAUTHORIZED"
    for name in ("fal_realtime.token", "fal_realtime.connect"):
        (span,) = otel.finished(name)
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == code
        assert "bad-secret" not in repr((span.attributes, span.status, span.events))
    durations = otel.points()["fal_realtime.connect.duration"]
    assert [a.get("error.type") for a, _ in durations] == [code]
    assert otel.value("fal_realtime.errors", error_type=code) == 1


async def test_obs_5_instruments_follow_the_conventions(
    running: RunningGateway, otel: Otel
) -> None:
    """OBS-5: every instrument of SPEC §9 exists, with its unit; histograms in seconds."""
    done = asyncio.Event()
    async with await fal_realtime.connect(
        APP,
        base_url=running.ws_url,
        key=KEY,
        telemetry=otel.telemetry,
        throttle_interval=0,
        on_result=lambda _: done.set(),
    ) as conn:
        await conn.send({"v": 1})
        await done.wait()
        data = otel.reader.get_metrics_data()
    assert data is not None
    units = {
        m.name: m.unit for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
    }
    assert units["fal_realtime.result.latency"] == "s"
    assert units["fal_realtime.connect.duration"] == "s"
    assert units["fal_realtime.connections"] == "{connection}"
    assert {
        "fal_realtime.sent",
        "fal_realtime.coalesced",
        "fal_realtime.results",
        "fal_realtime.reconnects",
    } <= set(units)


async def test_obs_6_http_over_websockets_requests(
    gateway: Gateway, running: RunningGateway, otel: Otel
) -> None:
    """OBS-6: HTTP over WS: a span per request, ws.requests by status, time to first byte."""
    gateway.set_faults(APP, "rate_limit_every=2")
    async with fal_realtime.ws(
        APP, base_url=running.ws_url, key=KEY, telemetry=otel.telemetry
    ) as conn:
        ok = await conn.request({"v": 1})
        limited = await conn.request({"v": 2})
    assert ok.status == 200 and limited.status == 429
    spans = otel.finished("fal_realtime.ws.request")
    assert [s.attributes["http.response.status_code"] for s in spans if s.attributes] == [
        200,
        429,
    ]
    assert spans[0].status.status_code is not StatusCode.ERROR
    assert spans[1].status.status_code is StatusCode.ERROR
    assert spans[1].attributes is not None and spans[1].attributes["error.type"] == "RATE_LIMITED"
    assert otel.value("fal_realtime.ws.requests", fal_app_id=APP) == 2
    assert otel.value("fal_realtime.ws.requests", error_type="RATE_LIMITED") == 1
    (ttfb,) = otel.points()["fal_realtime.ws.time_to_first_byte"]
    assert ttfb[1].count == 2 and ttfb[0] == {"fal.app_id": APP}
    for span in spans:
        assert KEY not in repr((span.attributes, span.status, span.events))


async def test_obs_7_logs_carry_ids_and_never_a_secret(proxy: FaultProxy, otel: Otel) -> None:
    """OBS-7: every log record of a faulty session (DEBUG, root): ids as extra, no key or token."""
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Capture(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        session = await faulty_session(proxy, otel.telemetry)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert records
    ours = [r for r in records if r.name == "fal_realtime"]
    assert any("callback raised" in r.getMessage() for r in ours)
    assert any("retrying" in r.getMessage() for r in ours)
    for record in ours:
        assert getattr(record, "fal_app_id", None) == APP, record.getMessage()
        if record.funcName != "keep_fresh":
            assert getattr(record, "fal_connection_id", None) == session.conn.id
    for record in records:
        handler.format(record)  # fills exc_text from a traceback
        text = repr((record.getMessage(), record.msg, record.args, vars(record)))
        for secret in _secrets(session):
            assert secret not in text, (record.name, record.getMessage())


async def test_obs_8_nothing_records_without_a_provider(running: RunningGateway) -> None:
    """OBS-8: with no provider configured a connection's seam is OFF (no per-result calls)."""
    from opentelemetry import metrics, trace

    if _telemetry._live_meter_provider(metrics.get_meter_provider()) or (
        _telemetry._live_tracer_provider(trace.get_tracer_provider())
    ):
        pytest.skip("a global OpenTelemetry provider is configured in this process")
    async with await fal_realtime.connect(APP, base_url=running.ws_url, key=KEY) as conn:
        assert conn._driver._telemetry is _telemetry.OFF
        assert _telemetry.OFF.latency is None
    assert _telemetry._live_meter_provider(MeterProvider())
    assert _telemetry._live_tracer_provider(TracerProvider())


CHILD = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if fal-realtime[otel] were not installed
import fal_realtime

async def main() -> None:
    try:
        fal_realtime.Telemetry()
    except ImportError as exc:
        print("telemetry:", exc)
    got = asyncio.Event()
    async with await fal_realtime.connect(
        "fal-ai/echo", base_url=sys.argv[1], key=sys.argv[2],
        on_result=lambda r: got.set(), throttle_interval=0,
    ) as conn:
        await conn.send({"v": 1})
        await got.wait()
    async with fal_realtime.ws("fal-ai/echo", base_url=sys.argv[1], key=sys.argv[2]) as ws:
        print("status:", (await ws.request({"v": 1})).status)
    print("ok")

asyncio.run(main())
"""


async def test_obs_9_works_without_the_opentelemetry_api(running: RunningGateway) -> None:
    """OBS-9: without opentelemetry-api all works; Telemetry() says what to install."""
    proc = await start(sys.executable, "-c", CHILD, running.ws_url, KEY)
    code, out, err = await finish(proc)
    assert code == 0, err
    assert "pip install 'fal-realtime[otel]'" in out
    assert "status: 200" in out and out.rstrip().endswith("ok")


def test_obs_10_result_latency_is_sampled_by_default() -> None:
    """OBS-10: by default at most one result's latency per connection per 0.1 s is recorded."""
    recorded: list[float] = []

    class Histogram:
        def record(self, value: float, attributes: Any) -> None:
            recorded.append(value)

    now = [100.0]
    latency = _telemetry._recorder(Histogram(), {"fal.app_id": APP}, 0.1, lambda: now[0])
    for value, at in ((1.0, 100.0), (2.0, 100.05), (3.0, 100.09), (4.0, 100.1), (5.0, 100.35)):
        now[0] = at
        latency(value)
    assert recorded == [1.0, 4.0, 5.0]
    every = _telemetry._recorder(Histogram(), {}, 0)
    every(6.0)
    every(7.0)
    assert recorded[-2:] == [6.0, 7.0]
    assert Telemetry(meter_provider=MeterProvider()).latency_sample_interval_s == 0.1
    with pytest.raises(ValueError, match="latency_sample_interval_s"):
        Telemetry(latency_sample_interval_s=-1)


async def test_obs_11_a_wrong_telemetry_is_refused_before_any_io() -> None:
    """OBS-11: telemetry= that is not a Telemetry is a one-line TypeError at the call."""
    with pytest.raises(TypeError, match="telemetry must be a fal_realtime.Telemetry"):
        await fal_realtime.connect(
            APP,
            base_url="ws://127.0.0.1:9",
            key=KEY,
            telemetry=MeterProvider(),  # type: ignore[arg-type]
        )
    with pytest.raises(TypeError, match="telemetry must be a fal_realtime.Telemetry"):
        fal_realtime.ws(APP, base_url="ws://127.0.0.1:9", key=KEY, telemetry="otel")  # type: ignore[arg-type]


async def test_obs_12_an_outage_that_gives_up_fails_its_span(
    proxy: FaultProxy, otel: Otel, instant_retries: None
) -> None:
    """OBS-12: an outage that gives up: its span fails with error.type, a retry event each."""
    done = asyncio.Event()
    conn = await fal_realtime.connect(
        APP,
        base_url=proxy.ws_url,
        key=KEY,
        throttle_interval=0,
        reconnect={"max_attempts": 2},
        on_result=lambda _: done.set(),
        telemetry=otel.telemetry,
    )
    async with conn:
        await conn.send({"v": 1})
        await done.wait()
        proxy.refuse_for(60.0)
        assert proxy.cut() == 1
        await eventually(lambda: conn.state is ConnectionState.FAILED)
        assert otel.value("fal_realtime.connections", state="failed") == 1
    (outage,) = otel.finished("fal_realtime.reconnect")
    assert outage.status.status_code is StatusCode.ERROR
    assert outage.attributes is not None
    assert outage.attributes["error.type"] == "CONNECTION_LOST"
    assert outage.attributes["fal_realtime.outcome"] == "failed"
    retries = [e for e in outage.events if e.name == "retry"]
    assert retries and all(
        e.attributes is not None and e.attributes["error.type"] == "CONNECTION_LOST"
        for e in retries
    )
    attempts = [
        s
        for s in otel.finished("fal_realtime.connect")
        if s.parent is not None and s.parent.span_id == outage.context.span_id
    ]
    assert len(attempts) == 2
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
    assert otel.value("fal_realtime.errors", error_type="CONNECTION_LOST") == 1
    assert otel.value("fal_realtime.connections", state="failed") == 0  # closed now
