"""The exchange side: the ExchangeGateway and everything only it uses (Bybit's V5 formats, the pybit
transport, one WebSocket, the streams and their health, reads and paging, the cache, the rate limiter,
the one-off account requests). A transport (`Transport`: HTTP calls and stream clients) is what the
gateway is given; `BybitTransport` is the real one, and these names are what another one needs.
"""

from actors.exchange._formats import PRIVATE_TOPICS, Failure, HttpFail, HttpOk
from actors.exchange._transport import BybitTransport, Stream, Transport
from actors.exchange._websocket import Kind as StreamKind
from actors.exchange._websocket import StreamEvent
from actors.exchange.gateway import ExchangeGateway

__all__ = [
    "PRIVATE_TOPICS",
    "BybitTransport",
    "ExchangeGateway",
    "Failure",
    "HttpFail",
    "HttpOk",
    "Stream",
    "StreamEvent",
    "StreamKind",
    "Transport",
]
