"""A small HTTP client for the console's tests: a cookie jar, forms with the page's CSRF token,
and responses that are not followed when they redirect (to see the redirects)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient


@dataclass
class Reply:
    status: int
    text: str
    location: str

    def json(self) -> Any:
        return json.loads(self.text)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class ConsoleClient:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  NoRedirect())
        self.csrf = ""

    def request(self, path: str, form: dict[str, str] | None = None) -> Reply:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data, timeout=60) as response:
                reply = Reply(response.status, response.read().decode(),
                              response.headers.get("Location", ""))
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, exc.read().decode(), exc.headers.get("Location", ""))
        found = re.search(r'name="csrf" value="([^"]+)"', reply.text)
        if found:
            self.csrf = found.group(1)
        return reply

    def get(self, path: str) -> Reply:
        return self.request(path)

    def post(self, path: str, form: dict[str, str], csrf: bool = True) -> Reply:
        if csrf and not self.csrf:
            self.get("/topics")
        return self.request(path, {**form, **({"csrf": self.csrf} if csrf else {})})


def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commits a group's offsets with the Admin API (the group has no members)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = [ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p, o) for p, o in offsets.items()])]
    admin.alter_consumer_group_offsets(request)[group].result(timeout=20)


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=20)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def topic_config(bootstrap: str, topic: str, key: str) -> str:
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=20)
    return str(entries[key].value)
