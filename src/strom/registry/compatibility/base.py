"""One incompatibility, as Confluent reports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Incompatibility:
    """An incompatibility: Confluent's type name (Avro's SchemaIncompatibilityType, JSON
    Schema's and Protobuf's Difference.Type), where it is, and what it is."""

    type: str
    path: str
    description: str
    additional_info: str = ""
    style: str = "avro"  # how Confluent words it: "avro", "json" or "protobuf"

    def message(self) -> str:
        """Confluent's wording: Avro's structured message; JSON Schema's and Protobuf's
        "Found incompatible change: Difference{...}"."""
        if self.style in ("json", "protobuf"):
            where = "jsonPath" if self.style == "json" else "fullPath"
            difference = f"Difference{{{where}='{self.path}', type={self.type}}}"
            return f"Found incompatible change: {difference}"
        return (f"{{errorType:'{self.type}', description:'{self.description}', "
                f"additionalInfo:'{self.additional_info}'}}")
