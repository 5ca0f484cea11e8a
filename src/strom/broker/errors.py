"""The error a handler raises for one resource (topic, partition, config resource)."""

from __future__ import annotations

from strom.protocol.messages import ErrorCode


class ApiError(Exception):
    """That resource's answer is this Kafka error code and, where the API has one, message."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


class CloseConnection(Exception):
    """The request cannot be answered; Kafka closes the connection in these cases (an unknown
    API key, a malformed body, a failed Produce with acks=0)."""
