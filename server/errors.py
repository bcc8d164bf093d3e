"""Errors that carry an HTTP-independent status: every stage raises these, the transport maps them."""

from __future__ import annotations


class ServingError(Exception):
    """An error with the status a client should see and a message naming what is wrong."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def __reduce__(self):  # keeps the status across a process boundary (process isolation)
        return _rebuild, (type(self), self.message, self.status, self.headers)


def _rebuild(cls, message: str, status: int, headers: dict[str, str]) -> ServingError:
    return cls(message, status=status, headers=headers)


class InvalidInput(ServingError):
    """The request is malformed: bad JSON, wrong shape or type (400)."""

    status = 400


class TooLarge(ServingError):
    """The request is larger than the server takes, or would decode into more than it allows (413)."""

    status = 413


class NotFound(ServingError):
    status = 404


class UnsupportedMediaType(ServingError):
    status = 415


class ModelError(ServingError):
    """The model raised while predicting (500, with the model's message)."""

    status = 500


class NotReady(ServingError):
    status = 503


class Overloaded(ServingError):
    status = 503


class DeadlineExceeded(ServingError):
    status = 504
