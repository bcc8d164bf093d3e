"""HTTP/1.1 transport: sockets, parsing, limits, status codes. Knows nothing of JSON or models."""

from .messages import BodyStream, Deferred, Request, Response
from .server import HttpServer, Limits

__all__ = ["BodyStream", "Deferred", "HttpServer", "Limits", "Request", "Response"]
