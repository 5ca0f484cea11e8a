"""strom.streams: stream processing for Python at Kafka Streams' level, as an ordinary Kafka
client library (it imports nothing of the broker, so it runs against any Kafka cluster).

    from strom.streams import StreamsBuilder, Consumed, Produced, Serdes, TopologyTestDriver
"""

from strom.streams.aggregate import Change
from strom.streams.app import State, StreamsApp
from strom.streams.config import StreamsConfig, StreamsConfigError
from strom.streams.driver import TestInputTopic, TestOutputTopic, TopologyTestDriver
from strom.streams.dsl import (
    Consumed,
    Grouped,
    KGroupedStream,
    KStream,
    KTable,
    Materialized,
    Produced,
    Repartitioned,
    StreamsBuilder,
)
from strom.streams.errors import ErrorHandling, ProcessingHandler, ProductionHandler
from strom.streams.global_table import GlobalKTable
from strom.streams.grouped_table import KGroupedTable
from strom.streams.joins import Joined, JoinWindows, StreamJoined
from strom.streams.processor import Processor, ProcessorContext, PunctuationType
from strom.streams.queries import KeyQueryMetadata, StreamsMetadata
from strom.streams.record import Record, RecordMetadata
from strom.streams.serdes import JsonSerde, Serde, Serdes, SerializationError
from strom.streams.stores.kv import KeyValueStore, KeyValueStoreBuilder
from strom.streams.stores.session import SessionStore, SessionStoreBuilder
from strom.streams.stores.window import TimestampedWindowStore, WindowStore, WindowStoreBuilder
from strom.streams.suppress import BufferConfig, Suppressed
from strom.streams.task import DeserializationHandler, StreamsError
from strom.streams.thread import RestoreProgress
from strom.streams.topology import Topology, TopologyError
from strom.streams.windowed import SessionWindowedKStream, TimeWindowedKStream
from strom.streams.windowed_serdes import WindowedSerdes
from strom.streams.windows import (
    EmitStrategy,
    SessionWindows,
    SlidingWindows,
    TimeWindows,
    Window,
    Windowed,
)

__all__ = [
    "BufferConfig", "Change", "Consumed", "DeserializationHandler", "EmitStrategy",
    "ErrorHandling", "GlobalKTable", "Grouped", "JoinWindows", "Joined", "JsonSerde",
    "KGroupedStream", "KGroupedTable", "KStream", "KTable", "KeyQueryMetadata", "KeyValueStore",
    "KeyValueStoreBuilder", "Materialized", "ProcessingHandler", "Processor",
    "ProcessorContext", "Produced", "ProductionHandler", "PunctuationType", "Record",
    "RecordMetadata", "Repartitioned", "RestoreProgress", "Serde", "Serdes",
    "SerializationError", "SessionStore", "SessionStoreBuilder", "SessionWindowedKStream",
    "SessionWindows", "SlidingWindows", "State", "StreamJoined", "StreamsApp", "StreamsBuilder",
    "StreamsConfig", "StreamsConfigError", "StreamsError", "StreamsMetadata", "Suppressed",
    "TestInputTopic", "TestOutputTopic", "TimeWindowedKStream", "TimeWindows",
    "TimestampedWindowStore", "Topology", "TopologyError", "TopologyTestDriver", "Window",
    "WindowStore", "WindowStoreBuilder", "Windowed", "WindowedSerdes",
]
