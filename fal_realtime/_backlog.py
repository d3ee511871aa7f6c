"""A socket's backlog: what it was handed and has not yet sent (for latest wins at the link).

Latest wins end to end means nothing is handed to a socket while what was handed
before has not drained: a frame that waits for the *link* is then superseded by a newer
one exactly as one that waits for its throttle interval, and latency stays bounded at
any uplink speed. What counts as not drained, and why:

- the transports' write buffers (asyncio holds what the kernel refused; under TLS the
  TLS transport's buffer and the TCP one's beneath it): always counted, and cheap to ask
  (:func:`fal_realtime._aiohttp_private.write_transports` finds them; without them, only
  the kernel is asked);
- the kernel's unsent bytes (written, not yet sent on the wire; bytes in flight are the
  network's and are not counted, or a link would idle a round trip per frame): Linux
  answers ``ioctl(SIOCOUTQNSD)`` (2 µs here). To keep that syscall off a fast link's hot
  path, the socket gets ``TCP_NOTSENT_LOWAT`` (16 KiB, where the platform has it): the
  kernel then takes a write only while fewer than that many bytes wait unsent in it,
  so after a frame of at most 16 KiB it holds at most about 32 KiB unsent, and the
  rest waits in the transport's buffer, which is counted. The kernel is asked only
  after a larger frame (camera frames: the syscall is small beside one).

Elsewhere (no ``SIOCOUTQNSD``), the transports' buffers and the low-water mark bound
the backlog to about one frame beyond ``TCP_NOTSENT_LOWAT``.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Final

try:
    import fcntl
except ImportError:  # Windows: no ioctl; the transports' buffers still count
    fcntl = None  # type: ignore[assignment]

import aiohttp

from ._aiohttp_private import write_transports

__all__ = ["NOTSENT_LOWAT", "Backlog"]

#: The kernel's unsent bytes above which a socket stops taking writes (TCP_NOTSENT_LOWAT).
NOTSENT_LOWAT: Final = 16 * 1024
#: linux/sockios.h: the bytes written to a TCP socket and not yet sent.
_SIOCOUTQNSD: Final = 0x894B
_TCP_NOTSENT_LOWAT: Final[int | None] = getattr(
    socket, "TCP_NOTSENT_LOWAT", 25 if sys.platform == "linux" else None
)


class Backlog:
    """Measure one socket's backlog; see the module docstring.

    Args:
        ws: an open client socket (its low-water mark is set here).
    """

    __slots__ = ("_buffer", "_fd", "_sizes")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # Bound once: the send path asks them for every frame.
        self._sizes = tuple(t.get_write_buffer_size for t in write_transports(ws))
        self._fd = -1
        self._buffer = bytearray(4)
        sock: Any = ws.get_extra_info("socket")
        if sock is None or _TCP_NOTSENT_LOWAT is None:
            return
        try:
            # A socket that is not TCP (a Unix socket) refuses the option: nothing to ask.
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
        except OSError:
            return
        if sys.platform == "linux" and fcntl is not None:
            self._fd = sock.fileno()

    def buffered(self) -> int:
        """Return the bytes the transports hold (the kernel refused them so far)."""
        return sum(size() for size in self._sizes)

    def unsent(self) -> int:
        """Return the bytes the kernel holds unsent (0 where it cannot be asked)."""
        if self._fd < 0 or fcntl is None:
            return 0
        try:
            fcntl.ioctl(self._fd, _SIOCOUTQNSD, self._buffer, True)
        except OSError:  # closed meanwhile, or a kernel without it: the buffers still count
            self._fd = -1
            return 0
        return int.from_bytes(self._buffer, sys.byteorder)

    def pending(self, last_frame_bytes: int) -> bool:
        """Tell whether what the socket was handed has not drained yet.

        Args:
            last_frame_bytes: the size of the last frame written (the kernel is asked
                only after one larger than :data:`NOTSENT_LOWAT`).
        """
        for size in self._sizes:
            if size():
                return True
        return last_frame_bytes > NOTSENT_LOWAT and self.unsent() > 0
