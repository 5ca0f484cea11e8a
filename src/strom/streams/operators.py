"""The processors behind the DSL's record-at-a-time operators. Each forwards to all of its
children (the task calls them depth first)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from strom.streams.processor import Processor
from strom.streams.record import Record

KeyValueMapper = Callable[[Any, Any], tuple[Any, Any]]
ValueMapper = Callable[[Any], Any]
Predicate = Callable[[Any, Any], bool]


class MapProcessor(Processor):
    def __init__(self, mapper: KeyValueMapper) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        key, value = self.mapper(record.key, record.value)
        self.context.forward(Record(key, value, record.timestamp, record.headers))


class MapValuesProcessor(Processor):
    def __init__(self, mapper: ValueMapper) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        self.context.forward(Record(record.key, self.mapper(record.value), record.timestamp,
                                    record.headers))


class MapValuesWithKeyProcessor(Processor):
    def __init__(self, mapper: Callable[[Any, Any], Any]) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        self.context.forward(Record(record.key, self.mapper(record.key, record.value),
                                    record.timestamp, record.headers))


class SelectKeyProcessor(Processor):
    def __init__(self, mapper: Callable[[Any, Any], Any]) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        self.context.forward(Record(self.mapper(record.key, record.value), record.value,
                                    record.timestamp, record.headers))


class FlatMapProcessor(Processor):
    def __init__(self, mapper: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        forward = self.context.forward
        for key, value in self.mapper(record.key, record.value):
            forward(Record(key, value, record.timestamp, record.headers))


class FlatMapValuesProcessor(Processor):
    def __init__(self, mapper: Callable[[Any], Iterable[Any]]) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        forward = self.context.forward
        for value in self.mapper(record.value):
            forward(Record(record.key, value, record.timestamp, record.headers))


class FilterProcessor(Processor):
    def __init__(self, predicate: Predicate, keep: bool = True) -> None:
        self.predicate = predicate
        self.keep = keep

    def process(self, record: Record) -> None:
        if bool(self.predicate(record.key, record.value)) is self.keep:
            self.context.forward(record)


class PeekProcessor(Processor):
    """Calls `action` and forwards the record unchanged (foreach: a peek with no child)."""

    def __init__(self, action: Callable[[Any, Any], Any]) -> None:
        self.action = action

    def process(self, record: Record) -> None:
        self.action(record.key, record.value)
        self.context.forward(record)


class BranchProcessor(Processor):
    """Forwards each record to the child of the first predicate it satisfies (children are
    named in predicate order; a record no predicate takes is dropped)."""

    def __init__(self, predicates: list[Predicate], children: list[str]) -> None:
        self.branches = list(zip(predicates, children, strict=True))

    def process(self, record: Record) -> None:
        for predicate, child in self.branches:
            if predicate(record.key, record.value):
                self.context.forward(record, child)
                return


class PassThroughProcessor(Processor):
    def process(self, record: Record) -> None:
        self.context.forward(record)
