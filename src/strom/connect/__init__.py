"""strom.connect: a Kafka Connect runtime (a Kafka client app: nothing of the broker).

The data model (`strom.connect.data`), records, configs, converters and transforms follow
Kafka Connect's Java API with Python names; see docs/connect.md.
"""
