"""Screenshots of the web console's pages for docs/console/ (PNG), taken in headless Chromium
against an embedded broker with a little traffic and a consumer group that lags:

    python -m tests.integration.console_screenshots [DIR]   # default docs/console
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from strom.console import ConsoleSettings, start_in_thread
from strom.testing import EmbeddedBroker
from tests.integration.browser import start_chromium
from tests.integration.conftest import create_topic
from tests.integration.console_client import ConsoleClient

PAGES = (
    ("cluster", "/cluster"),
    ("topics", "/topics"),
    ("topic", "/topics/orders?limit=6"),
    ("groups", "/groups"),
    ("group", "/groups/billing"),
    ("acls", "/acls"),
    ("users", "/users"),
    ("quotas", "/quotas"),
)
AUTHZ = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
         "super.users": "User:ANONYMOUS"}


def traffic(bootstrap: str, stop: threading.Event) -> None:
    """Orders at a changing rate: the throughput chart has something to show."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    n = 0
    while not stop.is_set():
        for _ in range(5 + (n // 20) % 15):
            n += 1
            producer.produce("orders", f'{{"order": {n}, "item": "book", "qty": {n % 4 + 1}}}'
                             .encode(), key=f"customer-{n % 7}".encode(),
                             headers=[("source", b"web")])
        producer.poll(0)
        time.sleep(0.25)
    producer.flush(10)


def consume_some(bootstrap: str, group: str, topic: str, count: int) -> Consumer:
    """A member of `group` that has read and committed `count` messages, and stays."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + 30
    while read < count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            read += 1
    consumer.commit(asynchronous=False)
    return consumer


def full_page(driver: Any, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 40, 600), 2400))
    time.sleep(0.3)
    driver.save_screenshot(str(path))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(settings=AUTHZ) as broker:
        bootstrap = broker.bootstrap_servers
        create_topic(bootstrap, "orders", 3, {"retention.ms": "604800000"})
        create_topic(bootstrap, "payments", 2)
        create_topic(bootstrap, "audit-log", 1, {"cleanup.policy": "compact"})
        console = start_in_thread(ConsoleSettings(bootstrap, poll_interval=1.0))
        stop = threading.Event()
        thread = threading.Thread(target=traffic, args=(bootstrap, stop), daemon=True)
        thread.start()
        time.sleep(2)
        member = consume_some(bootstrap, "billing", "orders", 40)
        web = ConsoleClient(console.url)
        web.post("/users", {"name": "alice", "mechanism": "SCRAM-SHA-512", "password": "pw"})
        for operation in ("READ", "DESCRIBE"):
            web.post("/acls", {"resource_type": "TOPIC", "name": "orders", "pattern": "LITERAL",
                               "principal": "User:alice", "host": "*",
                               "operation": operation, "permission": "ALLOW"})
        web.post("/acls", {"resource_type": "GROUP", "name": "billing", "pattern": "PREFIXED",
                           "principal": "User:alice", "host": "*", "operation": "READ",
                           "permission": "ALLOW"})
        for quota in ({"user": "alice", "producer_byte_rate": "1048576",
                       "consumer_byte_rate": "2097152"},
                      {"user": "alice", "client_id": "billing-service",
                       "request_percentage": "50"},
                      {"client_default": "1", "producer_byte_rate": "524288",
                       "controller_mutation_rate": "10"}):
            web.post("/quotas", quota)
        time.sleep(12)  # the poller's samples: lag and throughput charts
        driver = start_chromium()
        try:
            for name, path in PAGES:
                driver.set_window_size(1280, 900)
                driver.get(console.url + path)
                time.sleep(1.5)
                full_page(driver, out / f"{name}.png")
            member.close()
            time.sleep(1)
            driver.get(console.url + "/groups/billing")
            driver.execute_script(
                "var f = document.getElementById('reset');"
                "f.querySelector('[name=topic]').value = 'orders';"
                "f.querySelector('[name=to]').value = 'latest';"
                "f.querySelector('button').click();")
            time.sleep(1.5)
            full_page(driver, out / "reset-preview.png")
        finally:
            driver.quit()
            stop.set()
            thread.join(10)
            console.stop()
        login = start_in_thread(ConsoleSettings(bootstrap, password="x"))
        driver = start_chromium(900, 500)
        try:
            driver.get(login.url + "/topics")
            time.sleep(0.5)
            driver.save_screenshot(str(out / "login.png"))
        finally:
            driver.quit()
            login.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/console"))
