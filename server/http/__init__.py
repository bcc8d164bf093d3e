"""HTTP/1.1 transport: sockets, parsing, limits, status codes. Knows nothing of JSON or models."""

from .messages import Deferred, Request, Response
from .server import HttpServer, Limits

__all__ = ["Deferred", "HttpServer", "Limits", "Request", "Response"]
