"""Kafka Connect's exceptions (org.apache.kafka.connect.errors), with Kafka's hierarchy."""

from __future__ import annotations


class ConnectException(Exception):
    """The base of Connect's errors (org.apache.kafka.connect.errors.ConnectException)."""


class DataException(ConnectException):
    """Bad data: a value that does not match its schema, a failed conversion."""


class SchemaBuilderException(DataException):
    """A schema built wrongly (a field twice, a default that does not match)."""


class SchemaProjectorException(DataException):
    """A value that cannot be projected onto another schema."""


class RetriableException(ConnectException):
    """A failure that may pass if the operation is retried."""


class NotFoundException(ConnectException):
    """A connector, task or plugin that does not exist."""


class AlreadyExistsException(ConnectException):
    """A connector that exists already."""


class IllegalWorkerStateException(ConnectException):
    """A call the worker cannot serve in its current state."""


class ConfigException(Exception):
    """A configuration error, worded as Kafka's org.apache.kafka.common.config.ConfigException:
    `ConfigException(name, value, message)` reads "Invalid value V for configuration N: M";
    `ConfigException(message)` is the message alone."""

    def __init__(self, name_or_message: str, *args: object) -> None:
        if not args:
            super().__init__(name_or_message)
            return
        value = args[0]
        message = args[1] if len(args) > 1 else None
        text = f"Invalid value {_java_str(value)} for configuration {name_or_message}"
        if message is not None:
            text += f": {message}"
        super().__init__(text)


def _java_str(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_java_str(v) for v in value) + "]"
    return str(value)
