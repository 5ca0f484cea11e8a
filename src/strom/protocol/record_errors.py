"""The error that produce-side record validation raises, carrying Kafka's error code."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# Kafka's messages for records that end early, records left over, and over-long varints.
PREMATURE_EOF: Final = "Incorrect declared batch size, premature EOF reached"
RECORDS_REMAINING: Final = "Incorrect declared batch size, records still remaining in batch"
VARINT_TOO_LONG: Final = "Found invalid record structure: varint too long"


class RecordsErrorCode(IntEnum):
    """The Kafka error codes that record validation can answer a produce partition with."""

    CORRUPT_MESSAGE = 2
    MESSAGE_TOO_LARGE = 10
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_COMPRESSION_TYPE = 76
    INVALID_RECORD = 87


# (batch_index, message): the RecordErrors of a v8+ produce response partition.
RecordError = tuple[int, str]


class RecordsError(Exception):
    """A produce partition's records that Kafka would reject, with the error code to answer."""

    error_code: int
    message: str
    record_errors: tuple[RecordError, ...]

    def __init__(self, error_code: int, message: str,
                 record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.error_code = int(error_code)
        self.message = message
        self.record_errors = record_errors

    def __repr__(self) -> str:
        return f"RecordsError({self.error_code}, {self.message!r})"


def corrupt(message: str) -> RecordsError:
    return RecordsError(RecordsErrorCode.CORRUPT_MESSAGE, message)


def invalid(message: str) -> RecordsError:
    return RecordsError(RecordsErrorCode.INVALID_RECORD, message)


def decompression_failed(codec_name: str, exc: Exception, max_decompressed_bytes: int,
                         too_large: bool) -> RecordsError:
    """MESSAGE_TOO_LARGE past the cap (so a Java producer splits the batch), else
    INVALID_RECORD for data the codec cannot decode."""
    if too_large:
        return RecordsError(RecordsErrorCode.MESSAGE_TOO_LARGE,
                            f"The {codec_name} batch decompresses to more than "
                            f"{max_decompressed_bytes} bytes")
    return invalid(f"Failed to decompress the {codec_name} record batch: {exc}")
