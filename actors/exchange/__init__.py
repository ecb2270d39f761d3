"""The exchange side: the ExchangeGateway and everything only it uses (Bybit's V5 formats, the pybit
transport, one WebSocket, the streams and their health, reads and paging, the cache, the rate limiter,
the one-off account requests).
"""

from actors.exchange._transport import BybitTransport
from actors.exchange.gateway import ExchangeGateway

__all__ = ["BybitTransport", "ExchangeGateway"]
