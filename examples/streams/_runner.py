"""What the example applications share: their command line, creating their topics, and
running a StreamsApp (exactly-once) until SIGTERM or Ctrl-C, then committing and stopping
cleanly.

Imported by the examples as a sibling module (`python examples/streams/NAME.py` puts this
folder on sys.path); it is not an example itself.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable, Sequence

from confluent_kafka.admin import AdminClient, NewTopic

from strom.streams import StreamsApp, Topology


def create_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=30).topics
    new = [NewTopic(t, partitions, -1) for t in topics if t not in existing]
    for future in admin.create_topics(new).values() if new else ():
        try:
            future.result(30)
        except Exception as exc:  # created meanwhile by another instance
            if "already exists" not in str(exc).lower():
                raise


def run(description: str, application_id: str, topics: Sequence[str],
        topology: Callable[[argparse.Namespace], Topology], what: str, *,
        options: Callable[[argparse.ArgumentParser], object] | None = None) -> None:
    """Parses the command line (the common options, then those `options` adds), creates the
    `topics` that are missing, and runs `topology(args)` until SIGTERM or Ctrl-C. `what` names
    the application in its log and in the error it exits with if it fails."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--application-id", default=application_id)
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--partitions", type=int, default=3)
    if options is not None:
        options(parser)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="another setting (Kafka Streams' or librdkafka's name)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    create_topics(args.bootstrap_servers, topics, args.partitions)
    config = {"application.id": args.application_id,
              "bootstrap.servers": args.bootstrap_servers,
              "processing.guarantee": "exactly_once_v2"}
    if args.state_dir:
        config["state.dir"] = args.state_dir
    for item in args.config:
        key, _, value = item.partition("=")
        config[key.strip()] = value.strip()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    app = StreamsApp(topology(args), config)
    app.start()
    logging.info("%s running (application %s); stop with Ctrl-C", what, args.application_id)
    while not stop.wait(0.5):
        if app.failure is not None:
            break
    app.close()
    if app.failure is not None:
        raise SystemExit(f"{what} failed: {app.failure}")
