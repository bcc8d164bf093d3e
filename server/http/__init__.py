"""HTTP/1.1 transport: sockets, parsing, limits, status codes. Knows nothing of JSON or models."""

from .messages import Request, Response
from .server import HttpServer, Limits

__all__ = ["HttpServer", "Limits", "Request", "Response"]
