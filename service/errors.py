"""One error tree for the whole service, mapped once to HTTP statuses and WebSocket close codes.

Services and actors raise these; only ``service.app`` turns them into responses.
"""

from __future__ import annotations


class ConfigurationError(Exception):
    """A setting is invalid; raised at start-up, never during a request."""


class AppError(Exception):
    """Base of every error that reaches a client. ``detail`` is shown to the client as is."""

    status_code = 500
    close_code = 4500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def body_extra(self) -> dict[str, object]:
        """Fields an error adds to its body beside ``detail`` (e.g. a merge's conflicts)."""
        return {}


class Invalid(AppError):
    status_code = 400
    close_code = 4400


class Unauthorized(AppError):
    status_code = 401
    close_code = 4401


class Forbidden(AppError):
    status_code = 403
    close_code = 4403


class NotFound(AppError):
    status_code = 404
    close_code = 4404


class Conflict(AppError):
    status_code = 409
    close_code = 4409


class UpstreamError(AppError):
    """Something outside (git remote, GitHub) failed in a way the client cannot fix by retrying input."""

    status_code = 502
    close_code = 4502


class Unavailable(AppError):
    """A dependency we need (the Docker engine) does not answer."""

    status_code = 503
    close_code = 4503
