"""`strom registry`: a schema registry with Confluent's REST API, keeping its schemas in the
compacted `_schemas` topic (issue 14).

A Kafka client application like strom.console and strom.streams: it imports nothing of the
broker (import-linter contract). The pure parts:

- strom.registry.wire: Confluent's wire format (magic byte, schema id, Protobuf message
  indexes); standard library only, so the broker may import it for validation on produce.
- strom.registry.schemas: parsed schemas per format (Avro, JSON Schema, Protobuf): validation,
  canonical forms, the identity that decides "same schema", references.
- strom.registry.compatibility: the seven compatibility levels and each format's rules.
- strom.registry.records: the `_schemas` topic's record format (Confluent's).
- strom.registry.state: the registry's state rebuilt from those records, and the logic of
  every read and write (the writes planned as records to append).

This __init__ imports nothing so that importing strom.registry.wire stays cheap.
"""
