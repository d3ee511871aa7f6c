"""The handlers and inputs behind tests/data/fal_runner_sequences.json.

Each case is one realtime handler and the frames a client sends it. The recording script
(``tests/data/record_fal_runner.py``) runs fal's own runner code on them to record the frames
fal sends back; ``tests/test_gateway_modes.py`` plays the same inputs to the local gateway
and compares. Handlers live at module level so their type hints resolve, as fal needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import ormsgpack

__all__ = ["CASES", "Case", "encode_input"]

#: A raw binary frame that is not msgpack (0xc1 is never used by msgpack).
NOT_MSGPACK = b"\xc1"


# -- unary --------------------------------------------------------------------------------


async def echo(input: dict[str, Any]) -> dict[str, Any]:
    return {"echo": input}


def double(input: dict[str, Any]) -> dict[str, Any]:
    return {"n": input["n"] * 2}


async def boom(input: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"boom on {input['n']}")


async def not_a_map(input: dict[str, Any]) -> dict[str, Any]:
    return input["n"]  # type: ignore[no-any-return]


# -- server streaming -----------------------------------------------------------------------


async def count(input: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for i in range(input["n"]):
        yield {"i": i}


def count_sync(input: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for i in range(input["n"]):
        yield {"i": i}


async def count_then_fail(input: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield {"i": 0}
    raise RuntimeError("stream broke")


# -- client streaming -----------------------------------------------------------------------


async def collect(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    texts = [item["text"] async for item in inputs]
    return {"count": len(texts), "joined": " ".join(texts)}


async def first_only(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async for item in inputs:
        return {"first": item}
    return {"first": None}


async def collect_then_fail(inputs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async for item in inputs:
        if item.get("fail"):
            raise RuntimeError("collector gave up")
    return {"done": True}


# -- bidirectional --------------------------------------------------------------------------


async def shout(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for item in inputs:
        yield {"text": item["text"].upper()}


async def greet_then_shout(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield {"ready": True}
    async for item in inputs:
        yield {"text": item["text"].upper()}
    yield {"bye": True}


async def shout_then_fail(inputs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for item in inputs:
        if item.get("fail"):
            raise RuntimeError("captioner broke")
        yield {"text": item["text"].upper()}


#: One frame a case sends: a map (sent as msgpack), raw bytes (binary) or a str (text).
Input = dict[str, Any] | bytes | str


@dataclass(frozen=True)
class Case:
    """One handler, the mode fal infers for it, and the frames the client sends."""

    name: str
    mode: str
    handler: Any
    inputs: tuple[Input, ...]
    #: False when fal's reason text comes from its decoder or ASGI server, not from fal.
    reason_exact: bool = True
    #: True when fal's runner sends the items out of order: its outgoing queue holds
    #: 2 * (buffering or 1) frames and sends directly when full ("may reorder outputs",
    #: fal/realtime.py 323-332). The gateway keeps the handler's order.
    runner_reorders: bool = False


def encode_input(item: Input) -> bytes | str:
    """Return the frame for one case input."""
    return ormsgpack.packb(item) if isinstance(item, dict) else item


_WORDS = tuple({"text": w} for w in ("one", "two", "three", "four", "five"))

CASES: tuple[Case, ...] = (
    Case("unary-echo", "unary", echo, ({"n": 1}, {"n": 2}, {"n": 3})),
    Case("unary-sync", "unary", double, ({"n": 1}, {"n": 2})),
    Case("unary-idle", "unary", echo, ()),
    Case("unary-raises", "unary", boom, ({"n": 1}, {"n": 2})),
    Case("unary-output-not-a-map", "unary", not_a_map, ({"n": 1},)),
    Case("unary-not-msgpack", "unary", echo, (NOT_MSGPACK,), reason_exact=False),
    Case("unary-input-not-a-map", "unary", echo, (ormsgpack.packb(5),), reason_exact=False),
    Case("unary-text-frame", "unary", echo, ('{"n": 1}',), reason_exact=False),
    Case("server-streaming-async", "server_streaming", count, ({"n": 3},), runner_reorders=True),
    Case("server-streaming-sync", "server_streaming", count_sync, ({"n": 3},)),
    Case("server-streaming-one-input", "server_streaming", count, ({"n": 2}, {"n": 5})),
    Case("server-streaming-idle", "server_streaming", count, ()),
    Case("server-streaming-raises", "server_streaming", count_then_fail, ({"n": 1},)),
    Case(
        "server-streaming-not-msgpack",
        "server_streaming",
        count,
        (NOT_MSGPACK,),
        reason_exact=False,
    ),
    Case("client-streaming-collect", "client_streaming", collect, _WORDS),
    Case("client-streaming-idle", "client_streaming", collect, ()),
    Case("client-streaming-early-return", "client_streaming", first_only, _WORDS[:3]),
    Case(
        "client-streaming-raises",
        "client_streaming",
        collect_then_fail,
        ({"text": "a"}, {"fail": True}),
    ),
    Case(
        "client-streaming-not-msgpack",
        "client_streaming",
        collect,
        (_WORDS[0], NOT_MSGPACK),
        reason_exact=False,
    ),
    Case("bidi-shout", "bidi", shout, _WORDS[:3]),
    Case("bidi-greet", "bidi", greet_then_shout, _WORDS[:2]),
    Case("bidi-idle", "bidi", shout, ()),
    Case("bidi-raises", "bidi", shout_then_fail, (_WORDS[0], {"fail": True})),
    Case("bidi-text-frame", "bidi", shout, (_WORDS[0], '{"text": "x"}'), reason_exact=False),
)
