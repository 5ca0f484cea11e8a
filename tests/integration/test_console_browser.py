"""The web console in a real headless Chromium (selenium and Debian's chromium-driver): what a
user sees, including pages that update without a reload. One browser for the module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from strom import __version__
from strom.console import ConsoleSettings, RunningConsole, start_in_thread
from strom.testing import EmbeddedBroker
from tests.integration.browser import require_chromium, start_chromium
from tests.integration.conftest import create_topic, produce_all, producer, unique_name
from tests.integration.console_client import commit_offsets, topic_config

WAIT_S = 15.0


@pytest.fixture(scope="module")
def console(broker: EmbeddedBroker) -> Iterator[RunningConsole]:
    require_chromium()
    running = start_in_thread(ConsoleSettings(broker.bootstrap_servers, poll_interval=0.5))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(console: RunningConsole) -> Iterator[Any]:
    driver = start_chromium()
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            result = check()
        except Exception:  # the element is not there yet, or was just replaced
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def text_of(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def test_topics_list_shows_a_created_topic(browser: Any, console: RunningConsole,
                                           new_topic: Callable[..., str]) -> None:
    name = new_topic(partitions=2)
    browser.get(console.url + "/topics")
    assert name in text_of(browser, "#topics")


def test_topics_list_updates_live(browser: Any, console: RunningConsole,
                                  broker: EmbeddedBroker) -> None:
    browser.get(console.url + "/topics")
    browser.execute_script("window.__loaded_once = true;")
    name = unique_name("live")
    assert name not in text_of(browser, "#topics")
    create_topic(broker.bootstrap_servers, name)
    wait_for(lambda: name in text_of(browser, "#topics"), "the new topic to appear")
    assert browser.execute_script("return window.__loaded_once === true;"), "page reloaded"


def test_message_browser_shows_a_produced_value(browser: Any, console: RunningConsole,
                                                broker: EmbeddedBroker, topic: str) -> None:
    p = producer(broker.bootstrap_servers)
    produce_all(p, topic, [{"key": b"k", "value": b'{"greeting":"hello from chromium"}'}])
    browser.get(console.url + f"/topics/{topic}")
    value = text_of(browser, "#message-table pre.value")
    assert '"greeting": "hello from chromium"' in value  # pretty-printed JSON


def test_group_page_shows_its_lag(browser: Any, console: RunningConsole,
                                  broker: EmbeddedBroker, topic: str) -> None:
    group = unique_name("group")
    produce_all(producer(broker.bootstrap_servers), topic, [{"value": b"x"}] * 7)
    commit_offsets(broker.bootstrap_servers, group, topic, {0: 3})
    browser.get(console.url + f"/groups/{group}")
    assert text_of(browser, "#total-lag") == "4"
    assert text_of(browser, "#lag span.lag") == "4"
    # the poller's samples become a chart, drawn without a reload
    wait_for(lambda: browser.find_elements("css selector", "#group-live svg polyline"),
             "the lag chart")


def test_config_edit_through_the_form(browser: Any, console: RunningConsole,
                                      broker: EmbeddedBroker, topic: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(console.url + f"/topics/{topic}")
    field = browser.find_element(By.CSS_SELECTOR, "input[data-key='retention.ms']")
    field.clear()
    field.send_keys("4321000")
    field.find_element(By.XPATH, "following-sibling::button[1]").click()
    wait_for(lambda: "retention.ms of" in text_of(browser, ".notice.ok"), "the confirmation")
    assert topic_config(broker.bootstrap_servers, topic, "retention.ms") == "4321000"
    field = browser.find_element(By.CSS_SELECTOR, "input[data-key='retention.ms']")
    assert field.get_attribute("value") == "4321000"


def test_pages_load_without_browser_errors(browser: Any, console: RunningConsole,
                                           topic: str) -> None:
    """Nothing the Content-Security-Policy blocks, nothing missing, no script errors."""
    browser.get_log("browser")  # what earlier tests left
    for path in ("/cluster", "/topics", f"/topics/{topic}", "/groups", "/quotas"):
        browser.get(console.url + path)
        time.sleep(0.8)  # a live refresh or two
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], path


def test_quota_set_through_the_form_appears(browser: Any, console: RunningConsole) -> None:
    from selenium.webdriver.common.by import By

    user = unique_name("quota-user")
    browser.get(console.url + "/quotas")
    form = browser.find_element(By.ID, "set-quota")
    form.find_element(By.NAME, "user").send_keys(user)
    form.find_element(By.NAME, "producer_byte_rate").send_keys("2097152")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "quotas of" in text_of(browser, ".notice.ok"), "the confirmation")
    rows = browser.find_elements(By.CSS_SELECTOR, "#quotas tbody tr")
    [row] = [r for r in rows if f"user={user}" in r.text]
    assert "2097152 (2.0 MiB/s)" in row.text


def test_cluster_page_shows_the_storage_engine(browser: Any, console: RunningConsole,
                                               storage_engine: str) -> None:
    browser.get(console.url + "/cluster")
    assert text_of(browser, "#brokers .engine") == storage_engine
    assert text_of(browser, "#brokers .version") == __version__
