"""Infer a realtime handler's mode from its type hints, as fal's runner does.

=====================  ====================================================  ==============
mode                   signature                                             outputs
=====================  ====================================================  ==============
unary                  ``[async] def f(input: dict) -> dict``                one per input
server streaming       ``async def f(input: dict) -> AsyncIterator[dict]``   many, one input
                       or ``def f(input: dict) -> Iterator[dict]``
client streaming       ``async def f(inputs: AsyncIterator[dict]) -> dict``  one, at the end
bidirectional          ``async def f(inputs: AsyncIterator[dict])``          as they come
                       ``-> AsyncIterator[dict]``
=====================  ====================================================  ==============

The rules are fal 1.83.0's (``fal/realtime.py`` lines 32-110 and 661-669): the first
positional parameter typed ``AsyncIterator``/``AsyncGenerator``
streams inputs; a return typed ``AsyncIterator``/``AsyncGenerator`` (or, with one input,
``Iterator``/``Iterable``/``Generator``) streams outputs. An input (or input item) typed as
a pydantic model or a dataclass gets each input map built into it, ``Model(**input)``,
as the runner does with its ``input_modal`` (fal/realtime.py lines 142-144, 165-167).

Where fal's runner would only fail once a session starts (a generator without a streaming
return hint, a sync client-streaming handler), :func:`infer_shape` refuses at
registration and names the signature to write.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HandlerShape", "RealtimeMode", "infer_shape"]

_ASYNC_ITERATORS = frozenset(
    {
        typing.AsyncIterator,
        typing.AsyncGenerator,
        collections.abc.AsyncIterator,
        collections.abc.AsyncGenerator,
    }
)
_SYNC_ITERATORS = frozenset(
    {
        typing.Iterator,
        typing.Iterable,
        typing.Generator,
        collections.abc.Iterator,
        collections.abc.Iterable,
        collections.abc.Generator,
    }
)

_UNARY = "async def f(input: dict) -> dict"
_SERVER = (
    "async def f(input: dict) -> AsyncIterator[dict] (or def f(input: dict) -> Iterator[dict])"
)
_CLIENT = "async def f(inputs: AsyncIterator[dict]) -> dict"
_BIDI = "async def f(inputs: AsyncIterator[dict]) -> AsyncIterator[dict]"


class RealtimeMode(enum.Enum):
    """How a realtime handler takes inputs and gives outputs (fal's ``realtime_mode``)."""

    UNARY = "unary"
    SERVER_STREAMING = "server_streaming"
    CLIENT_STREAMING = "client_streaming"
    BIDI = "bidi"


@dataclass(frozen=True, slots=True)
class HandlerShape:
    """A handler's mode and what kind of function it is."""

    mode: RealtimeMode
    #: ``async def`` (a coroutine function), not an async generator.
    is_coroutine: bool
    is_async_generator: bool
    #: The class each input map is turned into, ``model(**input)``, as fal's runner does
    #: with its ``input_modal``: a pydantic model or a dataclass hint (None: the map as is).
    input_model: Callable[..., Any] | None = None

    def build_input(self, value: dict[str, Any]) -> Any:
        """Return what the handler gets for one input map (raises what the model raises)."""
        return value if self.input_model is None else self.input_model(**value)

    @property
    def runs_in_thread(self) -> bool:
        """Tell whether calling the handler must happen off the event loop (a plain def)."""
        return not (self.is_coroutine or self.is_async_generator)


def _is(hint: Any, family: frozenset[Any]) -> bool:
    """Tell whether ``hint`` is one of ``family``, bare or subscripted."""
    try:
        return hint in family or typing.get_origin(hint) in family
    except TypeError:  # an unhashable annotation is no iterator type
        return False


def _model(hint: Any) -> Callable[..., Any] | None:
    """Return ``hint`` when inputs should be built into it (pydantic model, dataclass)."""
    if isinstance(hint, type) and (
        dataclasses.is_dataclass(hint)
        or hasattr(hint, "model_validate")
        or hasattr(hint, "parse_obj")
    ):
        return hint
    return None


def _item(hint: Any) -> Any:
    """Return the item type of ``AsyncIterator[X]`` (None when bare)."""
    args = typing.get_args(hint)
    return args[0] if args else None


def _hints(handler: Any) -> dict[str, Any]:
    """Return the resolved type hints of a function or of a callable object's ``__call__``."""
    target = handler
    if not (inspect.isfunction(handler) or inspect.ismethod(handler)):
        target = type(handler).__call__
    try:
        return typing.get_type_hints(target)
    except TypeError:  # e.g. a functools.partial: no annotations to read
        return {}
    except NameError as exc:
        raise TypeError(
            f"cannot read the type hints of realtime handler {_name(handler)}: {exc}; the "
            "gateway (like fal's runner) needs them resolvable at module level"
        ) from None


def _name(handler: Any) -> str:
    return repr(getattr(handler, "__qualname__", None) or type(handler).__qualname__)


def _kinds(handler: Any) -> tuple[bool, bool, bool]:
    """Return (coroutine function, async generator, sync generator) for ``handler``."""
    # Callable objects count by their __call__ (e.g. a class with ``async def __call__``).
    candidates = (handler, type(handler).__call__)
    return (
        any(inspect.iscoroutinefunction(c) for c in candidates),
        any(inspect.isasyncgenfunction(c) for c in candidates),
        any(inspect.isgeneratorfunction(c) for c in candidates),
    )


def _input_parameter(handler: Any) -> inspect.Parameter:
    """Return the parameter the input goes to; refuse handlers that cannot take one input.

    The gateway calls ``handler(input)``: a bound method's ``self`` is already bound.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        raise TypeError(f"realtime handler {_name(handler)} has no signature to read") from None
    params = [
        p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not params or params[0].kind is inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(
            f"realtime handler {_name(handler)} takes no positional input: write {_UNARY} "
            "(or another of the four realtime signatures)"
        )
    extra = [p.name for p in params[1:] if p.default is p.empty]
    if extra:
        raise TypeError(
            f"realtime handler {_name(handler)} needs more than its input "
            f"({', '.join(extra)}): the gateway passes one argument; write {_UNARY}"
        )
    return params[0]


def infer_shape(handler: Any) -> HandlerShape:
    """Return the handler's mode, inferred from its hints; raise TypeError when unsupported."""
    if not callable(handler):
        raise TypeError(f"a realtime handler must be callable, got {type(handler).__name__}")
    param = _input_parameter(handler)
    hints = _hints(handler)
    input_hint, output_hint = hints.get(param.name), hints.get("return")
    streams_in = _is(input_hint, _ASYNC_ITERATORS)
    streams_out = _is(output_hint, _ASYNC_ITERATORS)
    streams_out_sync = _is(output_hint, _SYNC_ITERATORS)
    coroutine, async_gen, sync_gen = _kinds(handler)
    name = _name(handler)

    def refuse(problem: str, signature: str) -> TypeError:
        return TypeError(f"cannot host realtime handler {name}: {problem}; write {signature}")

    if _is(input_hint, _SYNC_ITERATORS):
        raise refuse("streamed inputs arrive as an async iterator", _CLIENT + " or " + _BIDI)
    if streams_in and streams_out:
        mode = RealtimeMode.BIDI
        if not (coroutine or async_gen):
            raise refuse("a bidirectional handler must be async", _BIDI)
    elif streams_in:
        mode = RealtimeMode.CLIENT_STREAMING
        if async_gen or streams_out_sync:
            raise refuse("streamed outputs need '-> AsyncIterator[dict]'", _BIDI)
        if not coroutine:
            raise refuse("a client-streaming handler must be 'async def'", _CLIENT)
    elif streams_out or streams_out_sync:
        mode = RealtimeMode.SERVER_STREAMING
    else:
        mode = RealtimeMode.UNARY
        if async_gen:
            raise refuse("an async generator needs '-> AsyncIterator[dict]' to stream", _SERVER)
        if sync_gen:
            raise refuse("a generator needs '-> Iterator[dict]' to stream", _SERVER)
    model = _model(_item(input_hint) if streams_in else input_hint)
    return HandlerShape(
        mode, is_coroutine=coroutine, is_async_generator=async_gen, input_model=model
    )
