"""Page views per user per minute, and user sessions, with strom.streams.

Reads page views from `pageviews` (value: JSON {"user": ..., "page": ..., "timestamp": ms};
the key is not used) in event time, the view's own timestamp, and writes two topics:

- `pageviews-per-minute`: how many pages each user viewed in each minute (tumbling windows of
  one minute; a view may come up to the grace period, 10 s, after its minute ended, later ones
  are dropped). Every view updates its window's count, so the latest record of a key is the
  count so far. Key "user@start-end" (epoch milliseconds), value JSON
  {"user", "start", "end", "views"} (start and end in ISO 8601, UTC).
- `pageviews-sessions`: each user's sessions, views no more than the inactivity gap (5 min)
  apart, written once a session is over: when views of later times show it has ended, or
  when no views came for 30 s of wall-clock time and the gap has passed since (idle
  closing). Key "user@start-end", value JSON {"user", "start", "end", "views", "pages"}
  (the pages in time order).

Views that are not JSON objects with a string "user" and "page" and an integer "timestamp"
are dropped. Creates the topics if they are missing; runs until SIGTERM or Ctrl-C, then
commits and stops cleanly.

    python examples/streams/pageviews.py --bootstrap-servers localhost:9092
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from _runner import run

from strom.streams import (
    Consumed,
    EmitStrategy,
    JsonSerde,
    Materialized,
    Produced,
    Record,
    Repartitioned,
    Serdes,
    SessionWindows,
    StreamsBuilder,
    TimeWindows,
    Topology,
    Windowed,
)

INPUT, COUNTS, SESSIONS = "pageviews", "pageviews-per-minute", "pageviews-sessions"
MINUTE_MS, GRACE_MS, GAP_MS, IDLE_MS = 60_000, 10_000, 300_000, 30_000


def is_view(view: Any) -> bool:
    return (isinstance(view, dict) and isinstance(view.get("user"), str)
            and isinstance(view.get("page"), str) and type(view.get("timestamp")) is int
            and view["timestamp"] >= 0)


def event_time(record: Record, partition_time: int) -> int:
    """The view's own timestamp (the record's for anything that is not a view)."""
    return record.value["timestamp"] if is_view(record.value) else record.timestamp


def iso(ms: int) -> str:
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def window_key(key: Windowed) -> str:
    return f"{key.key}@{key.window.start}-{key.window.end}"


def window_value(key: Windowed, **fields: Any) -> dict[str, Any]:
    return {"user": key.key, "start": iso(key.window.start), "end": iso(key.window.end),
            **fields}


def add_page(user: str, view: dict[str, Any], pages: list[list[Any]]) -> list[list[Any]]:
    """A session's pages as [timestamp, page] pairs in time order."""
    return sorted([*pages, [view["timestamp"], view["page"]]], key=lambda p: p[0])


def merge_pages(user: str, one: list[list[Any]], two: list[list[Any]]) -> list[list[Any]]:
    return sorted(one + two, key=lambda p: p[0])


def session_value(key: Windowed, pages: list[list[Any]] | None) -> dict[str, Any] | None:
    if pages is None:  # not written with on_window_close; kept for on_window_update
        return None
    return window_value(key, views=len(pages), pages=[page for _, page in pages])


def topology(input_topic: str = INPUT, counts_topic: str = COUNTS,
             sessions_topic: str = SESSIONS, *, window_ms: int = MINUTE_MS,
             grace_ms: int = GRACE_MS, gap_ms: int = GAP_MS, idle_ms: int = IDLE_MS
             ) -> Topology:
    builder = StreamsBuilder()
    json: JsonSerde[Any] = Serdes.Json()
    views = (builder.stream(input_topic, consumed=Consumed(
                Serdes.String(), json, timestamp_extractor=event_time))
             .filter(lambda _key, view: is_view(view))
             # Keyed by user: written through the repartition topic
             # <application.id>-pageviews-by-user-repartition, so that each user's views
             # reach one task; both aggregations read it.
             .select_key(lambda _key, view: view["user"])
             .repartition(Repartitioned(Serdes.String(), json, name="pageviews-by-user")))

    (views.group_by_key()
     .windowed_by(TimeWindows.of_size_and_grace(window_ms, grace_ms))
     .count(Materialized("pageviews-per-minute-store"))
     .to_stream()
     .map(lambda key, views: (window_key(key), window_value(key, views=views)))
     .to(counts_topic, Produced(Serdes.String(), json)))

    (views.group_by_key()
     .windowed_by(SessionWindows.of_inactivity_gap_and_grace(gap_ms, grace_ms))
     .emit_strategy(EmitStrategy.on_window_close(wall_clock_idle_ms=idle_ms))
     .aggregate(list, add_page, merge_pages,
                Materialized("pageviews-sessions-store", value_serde=json))
     .to_stream()
     .map(lambda key, pages: (window_key(key), session_value(key, pages)))
     .to(sessions_topic, Produced(Serdes.String(), json)))
    return builder.build()


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idle-close-ms", type=int, default=IDLE_MS,
                        help="close sessions after this much wall-clock time without views")


def main() -> None:
    run(__doc__.splitlines()[0], "pageviews", [INPUT, COUNTS, SESSIONS],
        lambda args: topology(idle_ms=args.idle_close_ms), "page views", options=options)


if __name__ == "__main__":
    main()
