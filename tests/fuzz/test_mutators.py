"""The fuzzer's mutators produce what they claim: padded and oversized varints decode to the
values they stand for, tagged-field sections carry the abusive counts, header abuse keeps the
body, re-sealed corrupt batches carry a valid CRC-32C (and bad-CRC ones do not), and bombs
decompress past (or within) the limit they were built for."""

from __future__ import annotations

import random
import struct

import pytest
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.metadata.v5.request import MetadataRequest, MetadataRequestTopic

from bench.fuzz import batches, mutators, wire
from bench.fuzz.findings import pretty_hex
from strom.protocol.batch_header import CRC_OFFSET, batch_crc, read_batch_header
from strom.protocol.compression import DecompressedTooLarge, decompress

RESEALED = ("bad_count", "bad_last_offset_delta", "codec_5_7", "control_txn_bits",
            "resealed_records", "record_length", "header_count", "varint10", "timestamps",
            "producer_fields")


def stored_crc(batch: bytes) -> int:
    return int(struct.unpack_from(">I", batch, CRC_OFFSET)[0])


def flexible_seed() -> mutators.Seed:
    request = ApiVersionsRequest(client_software_name="abc", client_software_version="1")
    seed = mutators.Seed.of(wire.encode_frame(request, 5, client_id="cid"), "schema")
    assert seed is not None
    return seed


@pytest.mark.parametrize("value", [0, 1, 3, 127, 128, 300, 2**31])
@pytest.mark.parametrize("width", [5, 10])
def test_padded_varints_keep_their_value_and_width(value: int, width: int) -> None:
    encoded = mutators.uvarint(value, width)
    assert len(encoded) == width
    assert mutators.read_uvarint(encoded) == (value, width)


def test_oversized_varints() -> None:
    assert mutators.uvarint(2**32 - 1) == bytes.fromhex("ffffffff0f")
    assert mutators.uvarint(2**64 - 1) == b"\xff" * 9 + b"\x01"
    assert mutators.read_uvarint(mutators.uvarint(2**64 - 1)) == (2**64 - 1, 10)


def test_varint_replacements_are_the_value_padded_or_huge() -> None:
    rng = random.Random(1)
    seen = set()
    for _ in range(300):
        encoded = mutators.varint_replacement(rng, 4)
        value, used = mutators.read_uvarint(encoded)
        assert used == len(encoded) in (5, 10)
        assert value in (4, 0, 2**32 - 1, 2**35 - 1, 2**64 - 1)
        seen.add((value, used))
    assert {(4, 5), (4, 10), (2**32 - 1, 5), (2**64 - 1, 10)} <= seen


def test_varint_length_replaces_one_byte_with_a_long_varint() -> None:
    seed = flexible_seed()
    for i in range(50):
        out = mutators.varint_length(random.Random(i), bytearray(seed.body), seed, ())
        grown = len(out) - len(seed.body)
        assert grown in (4, 9)
        # Every replacement starts with a continuation bit, which no replaced byte has.
        pos = next(p for p in range(len(out)) if out[p] != seed.body[p])
        value, used = mutators.read_uvarint(out, pos)
        assert used == grown + 1
        assert value in (seed.body[pos], 0, 2**32 - 1, 2**35 - 1, 2**64 - 1)
        assert out[pos + used:] == seed.body[pos + 1:]


def test_tag_sections_carry_the_abusive_counts() -> None:
    counts = set()
    for i in range(400):
        section = mutators.tag_sections(random.Random(i))
        count, used = mutators.read_uvarint(section)
        counts.add(count)
        if count == 2 and section[used + 0] == section[used + 3]:
            assert section[used:used + 3] == section[used + 3:used + 6]  # the same tag twice
    assert {0, 1, 2, 1025, 2**32 - 1} <= counts


def test_tagged_fields_goes_where_a_tag_section_is() -> None:
    seed = flexible_seed()
    assert seed.flexible and seed.body[seed.client_end] == 0  # the header's empty section
    for i in range(50):
        out = mutators.tagged_fields(random.Random(i), bytearray(seed.body), seed, ())
        assert out[:seed.client_end] == seed.body[:seed.client_end]
        assert out != seed.body


def test_header_abuse_keeps_the_request_body() -> None:
    request = MetadataRequest(topics=(MetadataRequestTopic(name="t"),),
                              allow_auto_topic_creation=False)
    seed = mutators.Seed.of(wire.encode_frame(request, 9, client_id="client"), "schema")
    assert seed is not None and seed.client_end == 10 + len("client")
    changed = set()
    for i in range(100):
        out = mutators.header(random.Random(i), bytearray(seed.body), seed, ())
        assert out.endswith(seed.body[seed.client_end:])
        for name, start, end in (("key", 0, 2), ("version", 2, 4), ("correlation", 4, 8),
                                 ("client id", 8, seed.client_end)):
            if out[start:end] != seed.body[start:end]:
                changed.add(name)
    assert changed == {"key", "version", "correlation", "client id"}


def test_int_length_sets_a_plausible_length_huge_or_negative() -> None:
    request = MetadataRequest(topics=(MetadataRequestTopic(name="topic"),),
                              allow_auto_topic_creation=False)
    seed = mutators.Seed.of(wire.encode_frame(request, 1), "schema")
    assert seed is not None
    body = seed.body
    for i in range(50):
        out = mutators.int_length(random.Random(i), bytearray(body), seed, ())
        assert out != body and len(out) == len(body)
        hits = [p for width, fmt, abuse in ((2, ">h", mutators.INT16_ABUSE),
                                            (4, ">i", mutators.INT32_ABUSE))
                for p in mutators._length_positions(body, width, 8)
                if struct.unpack_from(fmt, out, p)[0] in abuse
                and out[:p] == body[:p] and out[p + width:] == body[p + width:]]
        assert hits, "one plausible length, and nothing else, was set to an abusive value"


@pytest.mark.parametrize("name", RESEALED)
def test_resealed_corruptions_have_a_valid_crc(name: str) -> None:
    for i in range(20):
        rng = random.Random(i)
        batch = batches.CORRUPTIONS[name](rng, batches.valid_batch(rng))
        assert stored_crc(batch) == batch_crc(batch, 0, len(batch))


def test_bad_crc_is_bad_and_outside_fields_keep_the_crc() -> None:
    for i in range(20):
        rng = random.Random(i)
        bad = batches.CORRUPTIONS["bad_crc"](rng, batches.valid_batch(rng))
        assert stored_crc(bad) != batch_crc(bad, 0, len(bad))
        magic = batches.CORRUPTIONS["magic"](rng, batches.valid_batch(rng))
        assert stored_crc(magic) == batch_crc(magic, 0, len(magic))
        assert read_batch_header(magic).magic != 2


def test_record_length_and_header_count_say_what_they_claim() -> None:
    record = batches.raw_record(0, b"v", length=2**34)
    assert mutators.read_uvarint(record)[0] == 2**35  # zigzag(2^34)
    with_headers = batches.raw_record(0, b"v", header_count=2**31)
    assert with_headers.endswith(batches.zigzag(2**31))


def test_bombs_decompress_past_or_within_their_limit() -> None:
    limit = 2**20
    for codec in batches.CODECS:
        above, count = batches.bomb("above", codec, limit, 0)
        assert count == 1 and stored_crc(above) == batch_crc(above, 0, len(above))
        with pytest.raises(DecompressedTooLarge):
            decompress(batches.CODECS[codec], above[61:], limit)
        below, _ = batches.bomb("below", codec, limit, 0)
        assert len(decompress(batches.CODECS[codec], below[61:], limit)) > limit // 2
    tiny, count = batches.bomb("tiny", "zstd", limit, 10_000)
    assert read_batch_header(tiny).records_count == count == 10_000


def test_stacked_mutation_names_its_mutators() -> None:
    seed = flexible_seed()
    body, names = mutators.mutate(random.Random(5), seed, [seed], 4, "header")
    assert len(names) == 4 and names[0] == "header"
    assert set(names) <= {*mutators.GENERIC, "header"}
    assert isinstance(body, bytes)


def test_pretty_hex_splits_the_prefix_and_folds_runs() -> None:
    assert pretty_hex(b"\x00\x00\x00\x0a" + b"\x61" * 9 + b"\x01") == "0000000a 61{x9}01"
