"""The Kafka wire format: framing, safe decoding on kio's schemas, record batches, error codes."""
