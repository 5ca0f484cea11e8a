"""Word count with strom.streams, exactly-once.

Reads lines of text from `words-input`, splits them into lowercase words, counts each word
and writes the running counts to `word-counts` (key: the word, value: its count as a decimal
string, both UTF-8). Creates the two topics if they are missing; runs until SIGTERM or
Ctrl-C, then commits and stops cleanly.

    python examples/streams/wordcount.py --bootstrap-servers localhost:9092
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading

from confluent_kafka.admin import AdminClient, NewTopic

from strom.streams import (
    Consumed,
    Grouped,
    Materialized,
    Produced,
    Serdes,
    StreamsApp,
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


def create_topics(bootstrap: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=30).topics
    new = [NewTopic(t, partitions, -1) for t in (INPUT, OUTPUT) if t not in existing]
    for future in admin.create_topics(new).values() if new else ():
        try:
            future.result(30)
        except Exception as exc:  # created meanwhile by another instance
            if "already exists" not in str(exc).lower():
                raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--application-id", default="wordcount")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    create_topics(args.bootstrap_servers, args.partitions)
    config = {"application.id": args.application_id,
              "bootstrap.servers": args.bootstrap_servers,
              "processing.guarantee": "exactly_once_v2"}
    if args.state_dir:
        config["state.dir"] = args.state_dir
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    app = StreamsApp(topology(), config)
    app.start()
    logging.info("word count running (application %s); stop with Ctrl-C", args.application_id)
    while not stop.wait(0.5):
        if app.failure is not None:
            break
    app.close()
    if app.failure is not None:
        raise SystemExit(f"word count failed: {app.failure}")


if __name__ == "__main__":
    main()
