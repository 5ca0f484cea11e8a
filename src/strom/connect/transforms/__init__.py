"""Single Message Transforms with Kafka's names and options (org.apache.kafka.connect.
transforms), predicates, and the TransformationChain that applies a connector's
`transforms`/`predicates` configs."""

from strom.connect.transforms.base import Transformation
from strom.connect.transforms.cast import Cast, CastKey, CastValue
from strom.connect.transforms.chain import TransformationChain, TransformationStage
from strom.connect.transforms.fields import (
    ExtractField,
    ExtractFieldKey,
    ExtractFieldValue,
    Flatten,
    FlattenKey,
    FlattenValue,
    HoistField,
    HoistFieldKey,
    HoistFieldValue,
    InsertField,
    InsertFieldKey,
    InsertFieldValue,
    MaskField,
    MaskFieldKey,
    MaskFieldValue,
    ReplaceField,
    ReplaceFieldKey,
    ReplaceFieldValue,
    ValueToKey,
)
from strom.connect.transforms.headers import (
    DropHeaders,
    HeaderFrom,
    HeaderFromKey,
    HeaderFromValue,
    InsertHeader,
)
from strom.connect.transforms.predicates import (
    HasHeaderKey,
    Predicate,
    RecordIsTombstone,
    TopicNameMatches,
)
from strom.connect.transforms.routing import Filter, RegexRouter
from strom.connect.transforms.timestamps import (
    TimestampConverter,
    TimestampConverterKey,
    TimestampConverterValue,
    TimestampRouter,
)

__all__ = [
    "Cast", "CastKey", "CastValue", "DropHeaders", "ExtractField", "ExtractFieldKey",
    "ExtractFieldValue", "Filter", "Flatten", "FlattenKey", "FlattenValue", "HasHeaderKey",
    "HeaderFrom", "HeaderFromKey", "HeaderFromValue", "HoistField", "HoistFieldKey",
    "HoistFieldValue", "InsertField", "InsertFieldKey", "InsertFieldValue", "InsertHeader",
    "MaskField", "MaskFieldKey", "MaskFieldValue", "Predicate", "RecordIsTombstone",
    "RegexRouter", "ReplaceField", "ReplaceFieldKey", "ReplaceFieldValue", "TimestampConverter",
    "TimestampConverterKey", "TimestampConverterValue", "TimestampRouter", "TopicNameMatches",
    "Transformation", "TransformationChain", "TransformationStage", "ValueToKey",
]
