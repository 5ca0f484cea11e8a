"""The `strom` command: serve a broker, and topic/produce/consume tools that are Kafka clients."""
