"""The console's pages and their live fragments."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from strom import __version__
from strom.cli.common import CliError
from strom.console import kafka
from strom.console.html import chart, csrf_field, esc, human_size, link, moment, table
from strom.console.session import SESSION_KEY, Session

if TYPE_CHECKING:
    from strom.console.app import Console

NAV = (("/cluster", "Cluster"), ("/topics", "Topics"), ("/groups", "Consumer groups"),
       ("/acls", "ACLs"), ("/users", "Users"), ("/quotas", "Quotas"))


def topic_url(name: str) -> str:
    return "/topics/" + quote(name, safe="")


def group_url(name: str) -> str:
    return "/groups/" + quote(name, safe="")


def html_response(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff",
                                 "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; "
                                 "style-src 'self'; script-src 'self'; img-src 'self' data:"})


class Pages:
    def __init__(self, console: Console) -> None:
        self.console = console

    # --- frame ----------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        return not self.console.settings.read_only

    def session(self, request: web.Request) -> Session:
        return request[SESSION_KEY]

    def client(self, request: web.Request) -> Any:
        return self.session(request).client

    def frame(self, request: web.Request, title: str, body: str, status: int = 200,
              bare: bool = False) -> web.Response:
        settings = self.console.settings
        nav = "".join(
            f'<a href="{href}"{" class=current" if request.path.startswith(href) else ""}>'
            f"{text}</a>" for href, text in NAV) if not bare else ""
        who = ""
        if not bare:
            session = self.session(request)
            badge = '<span class="badge">read-only</span>' if settings.read_only else ""
            out = ""
            if settings.login_required:
                out = (f'<form method="post" action="/logout" class="inline">'
                       f'{csrf_field(session.csrf)}<button>log out {esc(session.user)}'
                       "</button></form>")
            who = f'<span class="who">{badge}{out}</span>'
        notice = ""
        if request.query.get("msg"):
            notice = f'<p class="notice ok">{esc(request.query["msg"])}</p>'
        if request.query.get("error"):
            notice = f'<p class="notice error">{esc(request.query["error"])}</p>'
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · strom console</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/console.css">
<script src="/static/console.js" defer></script></head>
<body><header><a class="brand" href="/">strom console</a><nav>{nav}</nav>
<span class="cluster">{esc(settings.bootstrap)}</span>{who}</header>
<main><h1>{esc(title)}</h1>{notice}{body}</main>
<footer>strom {esc(__version__)} · updates every {settings.poll_interval:g}s</footer>
</body></html>"""
        return html_response(page, status)

    def live(self, url: str, content: str, ident: str) -> str:
        return f'<div id="{esc(ident)}" data-live="{esc(url)}">{content}</div>'

    def error(self, request: web.Request, message: str) -> web.Response:
        if request.path.endswith("/live"):
            return html_response(f'<p class="notice error">{esc(message)}</p>', 502)
        if request.get(SESSION_KEY) is None:
            return html_response(esc(message), 400)
        return self.frame(request, "Error", f'<p class="notice error">{esc(message)}</p>'
                          '<p><a href="/">back</a></p>', 400)

    def login(self, request: web.Request, problem: str, status: int = 200) -> web.Response:
        settings = self.console.settings
        user = ('<label>username <input name="username" autocomplete="username" required>'
                "</label>") if settings.sasl else '<input type="hidden" name="username" ' \
            'value="admin">'
        hint = ("your SASL credentials of the cluster" if settings.sasl
                else "the console's password")
        body = (f'<p class="muted">Log in with {hint}.</p>'
                + (f'<p class="notice error">{esc(problem)}</p>' if problem else "")
                + f'<form method="post" action="/login" class="card">{user}'
                '<label>password <input type="password" name="password" '
                'autocomplete="current-password" autofocus></label>'
                f'<input type="hidden" name="next" value="{esc(request.query.get("next", "/"))}">'
                '<button type="submit">log in</button></form>')
        return self.frame(request, "Log in", body, status, bare=True)

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/topics")

    async def call(self, func: Any, *args: Any) -> Any:
        return await self.console.call(func, *args)

    async def admin_call(self, request: web.Request, func: Any, *args: Any) -> Any:
        client = self.client(request)
        return await self.call(func, kafka.admin_for(client), client, *args)

    # --- cluster --------------------------------------------------------------------------

    async def cluster_fragment(self, request: web.Request) -> str:
        info: kafka.ClusterInfo = await self.admin_call(request, kafka.cluster_info)
        software: dict[int, kafka.Software] = await self.admin_call(
            request, kafka.broker_software, [i for i, _, _ in info.brokers])
        rows = []
        for i, host, port in info.brokers:
            runs = software.get(i, kafka.Software())
            rows.append((esc(i), esc(f"{host}:{port}"),
                         "controller" if i == info.controller else "",
                         f'<span class="version">{esc(runs.version)}</span>',
                         f'<span class="engine">{esc(runs.engine)}</span>'))
        summary = table(("cluster id", "controller", "brokers", "topics", "partitions"), [(
            esc(info.cluster_id), esc(info.controller), esc(len(info.brokers)),
            esc(info.topics), esc(info.partitions))])
        history = self.console.history
        messages = chart({"messages in/s": list(history.messages.points)},
                         "messages in per second (all topics)")
        sizes = chart({"bytes in/s": list(history.bytes.points)},
                      "bytes in per second (growth on storage, all topics)")
        return (summary + "<h2>Brokers</h2>"
                + table(("id", "address", "role", "version", "storage engine"), rows,
                        "brokers")
                + '<h2>Throughput</h2><div id="throughput-messages">' + messages + "</div>"
                + '<div id="throughput-bytes">' + sizes + "</div>")

    async def cluster(self, request: web.Request) -> web.StreamResponse:
        body = (self.live("/cluster/live", await self.cluster_fragment(request), "cluster")
                + f'<p class="muted">console version {esc(__version__)}; the cluster is any '
                "Kafka cluster the console can reach. A broker's version and storage engine "
                "are its read-only broker configs <code>strom.version</code> and "
                "<code>strom.storage.engine</code>; other Kafka brokers do not name theirs."
                "</p>")
        return self.frame(request, "Cluster", body)

    async def cluster_live(self, request: web.Request) -> web.StreamResponse:
        return html_response(await self.cluster_fragment(request))

    # --- topics ---------------------------------------------------------------------------

    async def topics_fragment(self, request: web.Request) -> str:
        rows: list[kafka.TopicRow] = await self.admin_call(request, kafka.list_topics)
        show_internal = request.query.get("internal") == "1"
        csrf = self.session(request).csrf
        out = []
        for t in rows:
            if t.internal and not show_internal:
                continue
            delete = ""
            if self.writable:
                delete = (f'<form method="post" action="{esc(topic_url(t.name))}/delete" '
                          f'class="inline confirm" data-confirm="Delete topic {esc(t.name)}?">'
                          f'{csrf_field(csrf)}<button class="danger">delete</button></form>')
            out.append((link(topic_url(t.name), t.name), esc(t.partitions), esc(t.messages),
                        f'<span class="size" data-bytes="{esc(dash(t.size))}">'
                        f"{esc(human_size(t.size))}</span>",
                        esc(retention(t.retention_ms)), delete))
        return table(("topic", "partitions", "messages", "size", "retention", ""), out,
                     "topics", "no topics")

    async def topics(self, request: web.Request) -> web.StreamResponse:
        live_url = "/topics/live" + ("?internal=1" if request.query.get("internal") else "")
        body = self.live(live_url, await self.topics_fragment(request), "topics-live")
        body += ('<p><a href="/topics?internal=1">show internal topics</a></p>'
                 if not request.query.get("internal") else "")
        if self.writable:
            body += f"""<h2>Create a topic</h2>
<form method="post" action="/topics" class="card" id="create-topic">
{csrf_field(self.session(request).csrf)}
<label>name <input name="name" required pattern="[A-Za-z0-9._\\-]+"></label>
<label>partitions <input name="partitions" type="number" min="1" value="1"></label>
<label>replication factor <input name="replication" type="number" min="1" value="1"></label>
<label>configs (key=value lines) <textarea name="config" rows="2"></textarea></label>
<button type="submit">create</button></form>"""
        return self.frame(request, "Topics", body)

    async def topics_live(self, request: web.Request) -> web.StreamResponse:
        return html_response(await self.topics_fragment(request))

    async def topic_fragment(self, request: web.Request, name: str) -> str:
        detail: kafka.TopicDetail = await self.admin_call(request, kafka.topic_detail, name)
        rows = [(esc(p.partition), esc(p.leader), esc(",".join(map(str, p.replicas))),
                 esc(",".join(map(str, p.isr))), esc(dash(p.start)), esc(dash(p.end)),
                 esc(max(0, (p.end or 0) - (p.start or 0))),
                 f'<span class="size" data-bytes="{esc(dash(p.size))}">'
                 f"{esc(human_size(p.size))}</span>")
                for p in detail.partitions]
        return (f'<p>{esc(detail.messages)} messages in {len(detail.partitions)} '
                f'partition(s), <span id="topic-size" data-bytes="{esc(dash(detail.size))}">'
                f"{esc(human_size(detail.size))}</span> on storage</p>"
                + table(("partition", "leader", "replicas", "in sync", "start offset",
                         "end offset", "messages", "size"), rows, "partitions"))

    async def topic(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["topic"]
        url = topic_url(name)
        detail: kafka.TopicDetail = await self.admin_call(request, kafka.topic_detail, name)
        body = "<h2>Partitions</h2>" + self.live(
            f"{url}/live", await self.topic_fragment(request, name), "partitions-live")
        body += await self.browser(request, name, len(detail.partitions))
        if self.writable:
            body += self.produce_form(request, name)
        body += "<h2>Configs</h2>" + self.configs(request, detail)
        return self.frame(request, f"Topic {name}", body)

    async def topic_live(self, request: web.Request) -> web.StreamResponse:
        return html_response(await self.topic_fragment(request, request.match_info["topic"]))

    def configs(self, request: web.Request, detail: kafka.TopicDetail) -> str:
        csrf = self.session(request).csrf
        action = esc(topic_url(detail.name)) + "/config"
        rows = []
        for c in detail.configs:
            value = "(hidden)" if c.sensitive else c.value
            if self.writable and not c.read_only:
                reset = ("" if c.default else
                         '<button name="reset" value="1" class="secondary">reset</button>')
                cell = (f'<form method="post" action="{action}" class="inline config-edit">'
                        f'{csrf_field(csrf)}<input type="hidden" name="key" '
                        f'value="{esc(c.name)}"><input name="value" value="{esc(value)}" '
                        f'aria-label="{esc(c.name)}" data-key="{esc(c.name)}">'
                        f"<button>save</button>{reset}</form>")
            else:
                cell = f"<code>{esc(value)}</code>"
            rows.append((f"<code>{esc(c.name)}</code>", cell,
                         esc("default" if c.default else c.source.lower())))
        return table(("config", "value", "source"), rows, "configs", "no configs")

    def produce_form(self, request: web.Request, name: str) -> str:
        return f"""<h2>Produce a message</h2>
<form method="post" action="{esc(topic_url(name))}/produce" class="card" id="produce">
{csrf_field(self.session(request).csrf)}
<label>partition <input name="partition" type="number" min="0" placeholder="any"></label>
<label>key <input name="key"></label>
<label>value <textarea name="value" rows="3"></textarea></label>
<label>headers (key=value lines) <textarea name="headers" rows="2"></textarea></label>
<button type="submit">produce</button></form>"""

    async def browser(self, request: web.Request, name: str, partitions: int) -> str:
        browse, fmt = browse_options(request.query)
        found: list[kafka.Message] = await self.admin_call(request, kafka.read_messages, name,
                                                           browse)
        q = request.query

        def option(value: str, current: str, text: str) -> str:
            chosen = " selected" if value == current else ""
            return f'<option value="{esc(value)}"{chosen}>{esc(text)}</option>'

        modes = "".join(option(m, browse.mode, m) for m in kafka.MODES)
        parts = option("", q.get("partition", ""), "all") + "".join(
            option(str(p), q.get("partition", ""), str(p)) for p in range(partitions))
        formats = "".join(option(f, fmt, f) for f in kafka.FORMATS)
        form = f"""<form method="get" action="{esc(topic_url(name))}#messages" class="card"
 id="browse"><label>read <select name="mode">{modes}</select></label>
<label>partition <select name="partition">{parts}</select></label>
<label>offset <input name="offset" type="number" min="0" value="{esc(q.get("offset", ""))}"></label>
<label>timestamp <input name="timestamp" placeholder="ms or 2024-05-01T12:00"
 value="{esc(q.get("timestamp", ""))}"></label>
<label>limit <input name="limit" type="number" min="1" max="{kafka.MAX_MESSAGES}"
 value="{browse.limit}"></label>
<label>filter <input name="filter" placeholder="text in key or value"
 value="{esc(browse.filter)}"></label>
<label>show as <select name="format">{formats}</select></label>
<button type="submit">read</button></form>"""
        rows = [(esc(m.partition), esc(m.offset), esc(moment(m.timestamp)),
                 f'<pre class="msg-key">{esc(kafka.render(m.key, fmt))}</pre>',
                 f'<pre class="value">{esc(kafka.render(m.value, fmt))}</pre>',
                 "<br>".join(f"<code>{esc(k)}</code>: {esc(kafka.render(v, fmt))}"
                             for k, v in m.headers))
                for m in found]
        return (f'<h2 id="messages">Messages</h2>{form}'
                + table(("partition", "offset", "timestamp", "key", "value", "headers"), rows,
                        "message-table", "no messages"))

    async def messages_json(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["topic"]
        browse, fmt = browse_options(request.query)
        found: list[kafka.Message] = await self.admin_call(request, kafka.read_messages, name,
                                                           browse)
        return web.json_response({"topic": name, "messages": [
            {"partition": m.partition, "offset": m.offset, "timestamp": m.timestamp,
             "key": kafka.render(m.key, fmt) if m.key is not None else None,
             "value": kafka.render(m.value, fmt) if m.value is not None else None,
             "headers": [[k, kafka.render(v, fmt)] for k, v in m.headers]}
            for m in found]})

    # --- groups ---------------------------------------------------------------------------

    async def groups_fragment(self, request: web.Request) -> str:
        rows: list[kafka.GroupRow] = await self.admin_call(request, kafka.list_groups)
        history = self.console.history
        out = []
        for g in rows:
            series = history.lag.get(g.group_id, {})
            lag = sum(values[-1][1] for values in series.values() if values)
            status = history.group_health(g.group_id).status if series else "-"
            out.append((link(group_url(g.group_id), g.group_id), esc(g.state), esc(g.type),
                        esc(int(lag) if series else "-"), status_badge(str(status))))
        return table(("group", "state", "type", "lag", "health"), out, "groups",
                     "no consumer groups")

    async def groups(self, request: web.Request) -> web.StreamResponse:
        body = self.live("/groups/live", await self.groups_fragment(request), "groups-live")
        return self.frame(request, "Consumer groups", body)

    async def groups_live(self, request: web.Request) -> web.StreamResponse:
        return html_response(await self.groups_fragment(request))

    async def group_fragment(self, request: web.Request, group: str) -> str:
        detail: kafka.GroupDetail = await self.admin_call(request, kafka.group_detail, group)
        health = self.console.history.group_health(group)
        why = {(p.topic, p.partition): p for p in health.partitions}
        lag_rows = []
        for r in detail.lags:
            p = why.get((r.topic, r.partition))
            lag_rows.append((link(topic_url(r.topic), r.topic), esc(r.partition),
                             esc(dash(r.committed)), esc(dash(r.end)),
                             f'<span class="lag">{esc(dash(r.lag))}</span>', esc(r.owner),
                             status_badge(str(p.status)) if p else "-",
                             esc(p.reason if p else "")))
        members = [(esc(m.member_id), esc(m.client_id), esc(m.host),
                    esc(", ".join(f"{t}[{p}]" for t, p in m.assignment)))
                   for m in detail.members]
        series = {f"{t}[{p}]": list(values) for (t, p), values in
                  sorted(self.console.history.lag.get(group, {}).items())}
        return (table(("state", "members", "total lag", "health"), [(
                    f'<span id="group-state">{esc(detail.state)}</span>',
                    esc(len(detail.members)),
                    f'<span id="total-lag">{esc(detail.total_lag)}</span>',
                    status_badge(str(health.status)))])
                + "<h2>Lag per partition</h2>"
                + table(("topic", "partition", "committed", "end offset", "lag", "owner",
                         "health", "why"), lag_rows, "lag", "no committed offsets")
                + chart(series, "lag (messages) per partition over time")
                + "<h2>Members</h2>"
                + table(("member id", "client id", "host", "assignment"), members, "members",
                        "no active members"))

    async def group(self, request: web.Request) -> web.StreamResponse:
        group = request.match_info["group"]
        url = group_url(group)
        body = self.live(f"{url}/live", await self.group_fragment(request, group),
                         "group-live")
        if self.writable:
            body += self.reset_form(request, group, {})
        return self.frame(request, f"Group {group}", body)

    def reset_form(self, request: web.Request, group: str, form: Mapping[str, Any]) -> str:
        def option(value: str) -> str:
            chosen = " selected" if form.get("to") == value else ""
            return f'<option value="{value}"{chosen}>{value}</option>'

        targets = "".join(option(v) for v in ("earliest", "latest", "offset", "timestamp",
                                                "shift"))
        return f"""<h2>Reset offsets</h2>
<p class="muted">Kafka only accepts new offsets while the group has no active members.
Preview shows the plan; nothing changes until you apply it.</p>
<form method="post" action="{esc(group_url(group))}/reset" class="card" id="reset">
{csrf_field(self.session(request).csrf)}
<label>topic <input name="topic" placeholder="all with committed offsets"
 value="{esc(form.get("topic", ""))}"></label>
<label>to <select name="to">{targets}</select></label>
<label>value <input name="value" placeholder="offset, ms, ISO time or shift"
 value="{esc(form.get("value", ""))}"></label>
<button type="submit" name="apply" value="0">preview (dry run)</button></form>"""

    def reset_preview(self, request: web.Request, group: str, resets: list[kafka.Reset],
                      form: Mapping[str, Any], state: str) -> web.Response:
        rows = [(esc(r.topic), esc(r.partition), esc(dash(r.current)), esc(r.new))
                for r in resets]
        hidden = "".join(f'<input type="hidden" name="{k}" value="{esc(form.get(k, ""))}">'
                         for k in ("topic", "to", "value"))
        active = ""
        if state not in ("Empty", "Dead"):
            active = (f'<p class="notice error">The group has active members (state '
                      f"{esc(state)}): Kafka refuses new offsets until its consumers stop."
                      "</p>")
        body = ('<p class="notice">Dry run: nothing was changed.</p>' + active
                + table(("topic", "partition", "old offset", "new offset"), rows, "plan")
                + f'<form method="post" action="{esc(group_url(group))}/reset" class="card">'
                f'{csrf_field(self.session(request).csrf)}{hidden}'
                '<button type="submit" name="apply" value="1" class="danger">apply: commit '
                f"these offsets</button> {link(group_url(group), 'cancel')}</form>")
        return self.frame(request, f"Reset offsets of {group}", body)

    async def group_live(self, request: web.Request) -> web.StreamResponse:
        return html_response(await self.group_fragment(request, request.match_info["group"]))

    async def group_json(self, request: web.Request) -> web.StreamResponse:
        group = request.match_info["group"]
        detail: kafka.GroupDetail = await self.admin_call(request, kafka.group_detail, group)
        now_ms = int(time.time() * 1000)
        return web.json_response({
            "group": group, "state": detail.state, "total_lag": detail.total_lag,
            "partitions": [dict(dataclasses.asdict(r), lag=r.lag) for r in detail.lags],
            "health": self.console.history.group_health(group).to_json(now_ms)})


def browse_options(query: Mapping[str, str]) -> tuple[kafka.Browse, str]:
    def number(key: str, default: int) -> int:
        text = query.get(key, "").strip()
        try:
            return int(text) if text else default
        except ValueError:
            raise CliError(f"{key}: {text!r} is not a number") from None

    mode = query.get("mode", "newest")
    if mode not in kafka.MODES:
        raise CliError(f"mode must be one of {', '.join(kafka.MODES)}")
    fmt = query.get("format", "auto")
    if fmt not in kafka.FORMATS:
        raise CliError(f"format must be one of {', '.join(kafka.FORMATS)}")
    timestamp = 0
    if mode == "timestamp":
        from strom.console.app import parse_time

        parsed = parse_time(query.get("timestamp", "").strip())
        if parsed is None:
            raise CliError("timestamp: give milliseconds or an ISO 8601 date-time")
        timestamp = parsed
    partition_text = query.get("partition", "").strip()
    browse = kafka.Browse(mode, number("partition", 0) if partition_text else None,
                          number("offset", 0), timestamp,
                          min(max(number("limit", 50), 1), kafka.MAX_MESSAGES),
                          query.get("filter", ""))
    return browse, fmt


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def retention(ms: str) -> str:
    if not ms.lstrip("-").isdigit():
        return ms or "-"
    value = int(ms)
    if value < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} ms"


def status_badge(status: str) -> str:
    return f'<span class="status status-{esc(status.lower())}">{esc(status)}</span>'
