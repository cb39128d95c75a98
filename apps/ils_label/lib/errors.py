"""Request errors that carry an HTTP status, so the app answers bad input with a 4xx and a clear message.

Tasks and transforms raise these; ``MyApp.infer`` turns them into FastAPI ``HTTPException`` responses. They
stay plain exceptions otherwise, so the tasks also work from ``python -m monailabel.interfaces.utils.app``.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the server cannot answer; ``status`` is the HTTP status to reply with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = int(status)


class BadRequest(RequestError):
    status = 400


class NotFound(RequestError):
    status = 404


class PayloadTooLarge(RequestError):
    status = 413


class Unprocessable(RequestError):
    """Well-formed but unusable input: a non-frontal view for grounding, a report without findings."""

    status = 422


class ModelUnavailable(RequestError):
    """The model is not configured or its weights cannot be loaded; the message says what to configure."""

    status = 503
