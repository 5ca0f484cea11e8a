"""The registry's errors, with Confluent's error codes and HTTP statuses."""

from __future__ import annotations

# Confluent Schema Registry's error codes (the REST body's "error_code").
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
SCHEMA_VERSION_SOFT_DELETED = 40406
SCHEMA_VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED = 40408
SUBJECT_LEVEL_MODE_NOT_CONFIGURED = 40409
INCOMPATIBLE_SCHEMA = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
INVALID_MODE = 42204
OPERATION_NOT_PERMITTED = 42205
REFERENCE_EXISTS = 42206
ID_DOES_NOT_MATCH = 42207
INVALID_SUBJECT = 42208


class RegistryError(Exception):
    """An error the REST layer answers as {"error_code": code, "message": message}."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status: the code's first three digits (409 stays 409)."""
        return self.error_code if self.error_code < 1000 else self.error_code // 100

    def body(self) -> dict[str, object]:
        """The JSON body Confluent answers with."""
        return {"error_code": self.error_code, "message": self.message}


class InvalidSchemaError(RegistryError):
    """42201: the schema does not parse or does not validate against its format's rules."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_SCHEMA, message)
