"""The example applications' topologies (examples/streams) on the test driver: exactly what
they write for a few records each."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from strom.streams import Serdes, TestInputTopic, TestOutputTopic, TopologyTestDriver

EXAMPLES = Path(__file__).parents[3] / "examples" / "streams"
S, J = Serdes.String(), Serdes.Json()


def load(name: str) -> ModuleType:
    # The examples' folder on sys.path, as `python examples/streams/NAME.py` puts it there:
    # they import their shared runner (_runner.py) from it.
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"{name}_example_unit", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pageviews = load("pageviews")
orders = load("orders")


def rows(topic: TestOutputTopic) -> list[tuple[Any, Any, int]]:
    return [(r.key, r.value, r.timestamp) for r in topic.read_records_to_list()]


# -- pageviews ---------------------------------------------------------------------------------

class PageViews:
    def __init__(self, driver: TopologyTestDriver) -> None:
        self.driver = driver
        self.views: TestInputTopic = driver.create_input_topic(pageviews.INPUT, S, J)
        self.counts = driver.create_output_topic(pageviews.COUNTS, S, J)
        self.sessions = driver.create_output_topic(pageviews.SESSIONS, S, J)

    def view(self, user: str, page: str, timestamp: int) -> None:
        # The record's own timestamp is not the view's: the example reads event time.
        self.views.pipe_input("ignored", {"user": user, "page": page, "timestamp": timestamp},
                              timestamp=7)


@pytest.fixture
def views() -> Iterator[PageViews]:
    topology = pageviews.topology(idle_ms=1_000)
    with TopologyTestDriver(topology, {"application.id": "pv"}) as driver:
        yield PageViews(driver)


def minute(user: str, start_s: int, views: int, timestamp: int) -> tuple[str, Any, int]:
    start, end = start_s * 1000, start_s * 1000 + 60_000
    return (f"{user}@{start}-{end}",
            {"user": user, "start": pageviews.iso(start), "end": pageviews.iso(end),
             "views": views}, timestamp)


def test_pageviews_count_per_user_and_minute_with_grace(views: PageViews) -> None:
    views.view("alice", "/", 0)
    views.view("alice", "/a", 30_000)
    views.view("bob", "/", 61_000)
    views.view("alice", "/b", 65_000)
    views.view("alice", "/late", 5_000)  # 65 s - 10 s grace < 60 s: minute 0 still open
    views.view("bob", "/c", 119_999)
    views.view("alice", "/too-late", 10_000)  # stream time 120 s - 10 s > 60 s: dropped
    views.views.pipe_input(None, {"user": "alice"}, timestamp=1)  # not a view: dropped
    views.views.pipe_input(None, "not an object", timestamp=1)
    assert rows(views.counts) == [
        minute("alice", 0, 1, 0), minute("alice", 0, 2, 30_000), minute("bob", 60, 1, 61_000),
        minute("alice", 60, 1, 65_000), minute("alice", 0, 3, 30_000),
        minute("bob", 60, 2, 119_999)]
    assert pageviews.iso(60_000) == "1970-01-01T00:01:00.000Z"


def session(user: str, start: int, end: int, pages: list[str]) -> tuple[str, Any, int]:
    return (f"{user}@{start}-{end}",
            {"user": user, "start": pageviews.iso(start), "end": pageviews.iso(end),
             "views": len(pages), "pages": pages}, end)


def test_pageviews_sessions_close_by_event_time_and_when_idle(views: PageViews) -> None:
    gap, grace = pageviews.GAP_MS, pageviews.GRACE_MS
    views.view("alice", "/", 1_000)
    views.view("alice", "/cart", 100_000)
    views.view("bob", "/", 95_000)
    views.view("alice", "/help", 60_000)  # out of order, within the session
    # Alice comes back after more than the gap: a new session. Nothing is over yet: a view
    # up to the grace period late could still extend the first one.
    views.view("alice", "/again", 100_001 + gap)
    assert rows(views.sessions) == []
    # Stream time passes bob's end + gap + grace, then alice's first session's.
    views.view("carol", "/", 105_001 + gap)
    assert rows(views.sessions) == [session("bob", 95_000, 95_000, ["/"])]
    views.view("carol", "/x", 110_001 + gap)
    assert rows(views.sessions) == [
        session("alice", 1_000, 100_000, ["/", "/help", "/cart"])]
    # No more views: after 1 s of wall-clock idleness the closing time runs on with the
    # wall clock, and the open sessions close once their gap and grace have passed.
    views.driver.advance_wall_clock_time(gap)
    assert rows(views.sessions) == []
    views.driver.advance_wall_clock_time(1_000)
    assert rows(views.sessions) == [session("alice", 100_001 + gap, 100_001 + gap, ["/again"])]
    views.driver.advance_wall_clock_time(grace)
    assert rows(views.sessions) == [
        session("carol", 105_001 + gap, 110_001 + gap, ["/", "/x"])]
    # A view for a session closed that way is late: dropped.
    views.view("carol", "/late", 110_002 + gap)
    views.driver.advance_wall_clock_time(gap + grace + 2_000)
    assert rows(views.sessions) == []


def test_pageviews_topics_and_stores() -> None:
    topology = pageviews.topology()
    assert set(topology.internal_topics) == {"pageviews-by-user-repartition"}
    assert set(topology.stores) == {"pageviews-per-minute-store", "pageviews-sessions-store"}


# -- orders ------------------------------------------------------------------------------------

class Orders:
    def __init__(self, driver: TopologyTestDriver) -> None:
        self.customers = driver.create_input_topic(orders.CUSTOMERS, S, J)
        self.products = driver.create_input_topic(orders.PRODUCTS, S, J)
        self.orders = driver.create_input_topic(orders.ORDERS, S, J)
        self.with_customers = driver.create_output_topic(orders.WITH_CUSTOMERS, S, J)
        self.enriched = driver.create_output_topic(orders.ENRICHED, S, J)


@pytest.fixture
def shop() -> Iterator[Orders]:
    with TopologyTestDriver(orders.topology(), {"application.id": "shop"}) as driver:
        yield Orders(driver)


def order(order_id: str, customer_id: str, product_id: str, quantity: int,
          customer: Any) -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": customer_id, "product_id": product_id,
            "quantity": quantity, "customer": customer}


ADA, BOB = {"name": "Ada", "tier": "gold"}, {"name": "Bob"}
PEN, INK = {"name": "Pen", "price": 1.5}, {"name": "Ink", "price": 4}


def test_orders_join_their_customers_current_row(shop: Orders) -> None:
    shop.customers.pipe_input("c1", ADA, 1)
    shop.orders.pipe_input("o1", {"customer": "c1", "product": "p1", "quantity": 2}, 10)
    shop.orders.pipe_input("o2", {"customer": "c2", "product": "p1", "quantity": 1}, 11)
    shop.customers.pipe_input("c2", BOB, 12)  # a table update joins no earlier order
    shop.customers.pipe_input("c1", {**ADA, "tier": "silver"}, 13)
    shop.orders.pipe_input("o3", {"customer": "c1", "product": "p2", "quantity": 5}, 14)
    shop.orders.pipe_input("o4", {"customer": "c1", "product": "p2"}, 15)  # no quantity
    shop.orders.pipe_input("o5", None, 16)
    assert rows(shop.with_customers) == [
        ("o1", order("o1", "c1", "p1", 2, ADA), 10),
        ("o2", order("o2", "c2", "p1", 1, None), 11),
        ("o3", order("o3", "c1", "p2", 5, {**ADA, "tier": "silver"}), 14)]


def test_orders_foreign_key_join_follows_products(shop: Orders) -> None:
    shop.customers.pipe_input("c1", ADA, 1)
    shop.products.pipe_input("p1", PEN, 2)
    shop.orders.pipe_input("o1", {"customer": "c1", "product": "p1", "quantity": 3}, 10)
    shop.orders.pipe_input("o2", {"customer": "c1", "product": "p2", "quantity": 1}, 11)
    o1, o2 = order("o1", "c1", "p1", 3, ADA), order("o2", "c1", "p2", 1, ADA)
    # o2's product is not known yet: no result until it is.
    assert rows(shop.enriched) == [("o1", {**o1, "product": PEN, "total": 4.5}, 10)]
    shop.products.pipe_input("p2", INK, 12)
    assert rows(shop.enriched) == [("o2", {**o2, "product": INK, "total": 4}, 12)]
    # A new price updates every order of the product; a deleted product deletes them.
    shop.products.pipe_input("p1", {**PEN, "price": 2}, 13)
    shop.products.pipe_input("p2", None, 14)
    assert rows(shop.enriched) == [
        ("o1", {**o1, "product": {**PEN, "price": 2}, "total": 6}, 13), ("o2", None, 14)]
    # An order that changes its product follows it.
    shop.products.pipe_input("p2", INK, 15)
    shop.orders.pipe_input("o1", {"customer": "c1", "product": "p2", "quantity": 2}, 16)
    o1 = order("o1", "c1", "p2", 2, ADA)
    assert rows(shop.enriched) == [
        ("o2", {**o2, "product": INK, "total": 4}, 15),
        ("o1", {**o1, "product": INK, "total": 8}, 16)]


def test_orders_topics_and_copartitioning() -> None:
    topology = orders.topology()
    assert set(topology.internal_topics) == {
        "orders-by-customer-left-repartition", "orders-by-id-repartition",
        "orders-products-subscription-registration-topic",
        "orders-products-subscription-response-topic"}
    assert set(topology.copartition_groups) == {
        frozenset({"customers", "orders-by-customer-left-repartition"}),
        frozenset({"products", "orders-products-subscription-registration-topic"}),
        frozenset({"orders-by-id-repartition", "orders-products-subscription-response-topic"})}


# -- wordcount ---------------------------------------------------------------------------------

def test_wordcount_counts_words_of_lines() -> None:
    wordcount = load("wordcount")
    with TopologyTestDriver(wordcount.topology(), {"application.id": "wc"}) as driver:
        lines = driver.create_input_topic(wordcount.INPUT, S, S)
        counts = driver.create_output_topic(wordcount.OUTPUT, S, S)
        lines.pipe_input(None, "The fox, the dog", 1)
        lines.pipe_input("k", "a FOX", 2)
        assert rows(counts) == [("the", "1", 1), ("fox", "1", 1), ("the", "2", 1),
                                ("dog", "1", 1), ("a", "1", 2), ("fox", "2", 2)]
