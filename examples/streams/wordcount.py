"""Word count with strom.streams, exactly-once.

Reads lines of text from `words-input`, splits them into lowercase words, counts each word
and writes the running counts to `word-counts` (key: the word, value: its count as a decimal
string, both UTF-8). Creates the two topics if they are missing; runs until SIGTERM or
Ctrl-C, then commits and stops cleanly.

    python examples/streams/wordcount.py --bootstrap-servers localhost:9092
"""

from __future__ import annotations

import re

from _runner import run

from strom.streams import (
    Consumed,
    Grouped,
    Materialized,
    Produced,
    Serdes,
    StreamsBuilder,
    Topology,
)

INPUT, OUTPUT = "words-input", "word-counts"
WORD = re.compile(r"\w+")


def topology() -> Topology:
    builder = StreamsBuilder()
    (builder.stream(INPUT, consumed=Consumed(Serdes.String(), Serdes.String()))
     .flat_map_values(lambda line: WORD.findall(line.lower()))
     .group_by(lambda _key, word: word, Grouped(Serdes.String(), Serdes.String()))
     .count(Materialized("word-counts-store"))
     .to_stream()
     .map_values(str)
     .to(OUTPUT, Produced(Serdes.String(), Serdes.String())))
    return builder.build()


def main() -> None:
    run(__doc__.splitlines()[0], "wordcount", [INPUT, OUTPUT], lambda _args: topology(),
        "word count")


if __name__ == "__main__":
    main()
