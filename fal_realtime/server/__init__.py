"""The local gateway: fal's realtime and HTTP-over-WebSocket protocols on one port.

See :class:`Gateway`; ``fal-realtime serve`` runs one from the command line.
"""

from .common import DEFAULT_MAX_FRAME_BYTES
from .faults import Faults, parse_faults
from .gateway import Gateway, RunningGateway
from .tokens import TokenError, TokenIssuer

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "Faults",
    "Gateway",
    "RunningGateway",
    "TokenError",
    "TokenIssuer",
    "parse_faults",
]
