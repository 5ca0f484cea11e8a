"""The console's client quotas page: DescribeClientQuotas and AlterClientQuotas through
strom.cli.wire_admin (what `strom quota` sends; confluent-kafka has no call for them), with the
user's own client settings and SASL login."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from strom.cli.common import CliError
from strom.console import kafka
from strom.console.html import csrf_field, esc, human_size, table

if TYPE_CHECKING:
    from strom.console.pages import Pages

# The quotas of users and client ids (connection_creation_rate is an IP's: listed, not set here)
FORM_KEYS: Final = ("producer_byte_rate", "consumer_byte_rate", "request_percentage",
                    "controller_mutation_rate")
ENTITY_TYPES: Final = ("user", "client-id", "ip")
HINTS: Final = {"producer_byte_rate": "bytes/s", "consumer_byte_rate": "bytes/s",
                "request_percentage": "% of a thread", "controller_mutation_rate": "mutations/s"}


def quota_value(key: str, value: float) -> str:
    """1048576 (1.0 MiB/s) for byte rates, else the number."""
    text = number(value)
    if key.endswith("_byte_rate"):
        return f"{text} ({human_size(int(value))}/s)"
    return text


def number(value: float) -> str:
    """1048576, not 1.04858e+06; 0.5 stays 0.5."""
    return str(int(value)) if value.is_integer() else f"{value:g}"


def values_from(form: Any) -> dict[str, float]:
    """The form's quota values: blank ones left out; CliError for one that is not a number
    of zero or more."""
    values: dict[str, float] = {}
    for key in FORM_KEYS:
        text = str(form.get(key, "")).strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise CliError(f"{key}: {text!r} is not a number") from None
        if value < 0 or value != value:
            raise CliError(f"{key}: {text} must be zero or more")
        values[key] = value
    if not values:
        raise CliError("give at least one value, e.g. producer_byte_rate 1048576")
    return values


def entity_from_json(text: str) -> tuple[tuple[str, str | None], ...]:
    """The entity a delete button carries: [[type, name or null], ...]."""
    try:
        raw = json.loads(text)
        entity = tuple((str(kind), None if name is None else str(name)) for kind, name in raw)
    except (ValueError, TypeError):
        raise CliError("which quota? (the form names no entity)") from None
    if not entity or any(kind not in ENTITY_TYPES for kind, _ in entity):
        raise CliError("which quota? (the form names no entity)")
    return entity


class QuotaPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def quotas(self, request: web.Request) -> web.StreamResponse:
        client = self.pages.client(request)
        found: list[kafka.QuotaRow] = await self.pages.call(kafka.list_quotas, client)
        csrf = self.pages.session(request).csrf
        rows = []
        for q in found:
            remove = ""
            if self.pages.writable:
                entity = json.dumps([list(part) for part in q.entity])
                remove = (f'<form method="post" action="/quotas/delete" class="inline confirm" '
                          f'data-confirm="Delete the quotas of {esc(q.label)}?">'
                          f'{csrf_field(csrf)}<input type="hidden" name="entity" '
                          f'value="{esc(entity)}"><button class="danger">delete</button>'
                          "</form>")
            rows.append((f'<span class="entity">{esc(q.label)}</span>',
                         *(esc(quota_value(k, q.values[k])) if k in q.values else "-"
                           for k in kafka.QUOTA_KEYS), remove))
        body = table(("entity", *(k.replace("_", " ") for k in kafka.QUOTA_KEYS), ""), rows,
                     "quotas", "no client quotas")
        body += ('<p class="muted">Kafka applies the most specific quota that matches a client: '
                 "user and client id, then user, then client id (each before its default).</p>")
        if self.pages.writable:
            values = "".join(
                f'<label>{key} <input name="{key}" type="number" min="0" step="any" '
                f'placeholder="{esc(HINTS[key])}"></label>' for key in FORM_KEYS)
            body += f"""<h2>Set a quota</h2>
<form method="post" action="/quotas" class="card" id="set-quota">{csrf_field(csrf)}
<label>user <input name="user" placeholder="alice (blank: any)"></label>
<label class="check"><input type="checkbox" name="user_default" value="1"> the default user</label>
<label>client id <input name="client_id" placeholder="etl (blank: any)"></label>
<label class="check"><input type="checkbox" name="client_default" value="1"> the default client
id</label>
{values}
<button type="submit">set</button></form>"""
        return self.pages.frame(request, "Client quotas", body)

    async def set_quota(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        entity = kafka.quota_entity(str(form.get("user", "")), bool(form.get("user_default")),
                                    str(form.get("client_id", "")),
                                    bool(form.get("client_default")))
        values = values_from(form)
        await self.pages.call(kafka.set_quotas, self.pages.client(request), entity, values)
        label = kafka.QuotaRow(entity, values).label
        raise web.HTTPFound("/quotas?msg=" + kafka.quote_text(
            f"quotas of {label} set: " + ", ".join(f"{k}={number(v)}" for k, v in values.items())))

    async def delete_quota(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        entity = entity_from_json(str(form.get("entity", "")))
        removed: list[str] = await self.pages.call(kafka.delete_quotas,
                                                   self.pages.client(request), entity)
        label = kafka.QuotaRow(entity, {}).label
        if not removed:
            raise CliError(f"{label} has no quotas")
        raise web.HTTPFound("/quotas?msg=" + kafka.quote_text(
            f"quotas of {label} removed: {', '.join(removed)}"))
