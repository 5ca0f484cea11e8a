"""The error a handler raises for one resource (topic, partition, config resource)."""

from __future__ import annotations

import logging

from strom.protocol.messages import ErrorCode

log = logging.getLogger(__name__)


class ApiError(Exception):
    """That resource's answer is this Kafka error code and, where the API has one, message."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def unexpected(what: str) -> ApiError:
    """Called in an `except Exception` block: logs the exception with its traceback and
    returns the UNKNOWN_SERVER_ERROR answer for that one resource (Kafka's
    ApiError.fromThrowable), so the request's other resources still get their answers."""
    log.exception("%s failed unexpectedly", what)
    return ApiError(ErrorCode.unknown_server_error)


class CloseConnection(Exception):
    """The request cannot be answered; Kafka closes the connection in these cases (an unknown
    API key, a malformed body, a failed Produce with acks=0)."""
