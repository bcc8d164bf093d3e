"""Framework handlers: each loads one framework's artifacts and runs it on a batch."""

from .base import Handler, HandlerConfig

__all__ = ["Handler", "HandlerConfig"]
