"""Framework handlers: each loads one framework's artifacts and runs it on a batch."""

from .base import Capabilities, Handler, HandlerConfig, Inputs, RawBodies

__all__ = ["Capabilities", "Handler", "HandlerConfig", "Inputs", "RawBodies"]
