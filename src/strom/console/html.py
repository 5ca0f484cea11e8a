"""Server-rendered HTML: escaping, tables, forms and inline SVG charts (no template engine)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

COLORS: Final = ("#2f6fdf", "#d9534f", "#3c9d5d", "#e0a020", "#8e44ad", "#16a2b8",
                 "#795548", "#607d8b")


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], table_id: str = "",
          empty: str = "nothing yet") -> str:
    """A table; cells are HTML already (escape them with esc)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>'
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def human_size(size: int | None) -> str:
    """Bytes for people: 512 B, 1.5 KiB, 20.0 MiB, 3.2 GiB ("-" for unknown)."""
    if size is None or size < 0:
        return "-"
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if round(value, 1) < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(token)}">'


def link(href: str, text: object) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def clock(ms: int | float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def moment(ms: int) -> str:
    if ms <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f".{ms % 1000:03d}"


def chart(series: Mapping[str, Sequence[tuple[float, float]]], unit: str, width: int = 640,
          height: int = 160) -> str:
    """A line chart of time series ((time ms, value) points) as inline SVG."""
    points = [pt for values in series.values() for pt in values]
    if len(points) < 2:
        return '<p class="muted chart-empty">collecting samples…</p>'
    t0 = min(t for t, _ in points)
    t1 = max(t for t, _ in points)
    top = max(max(v for _, v in points), 1.0)
    left, bottom, pad = 56, 20, 6
    w, h = width - left - pad, height - bottom - pad

    def x(t: float) -> float:
        return left + (w * (t - t0) / (t1 - t0) if t1 > t0 else 0)

    def y(v: float) -> float:
        return pad + h - h * v / top

    lines = []
    legend = []
    for index, (name, values) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'points="{coords}"><title>{esc(name)}</title></polyline>')
        legend.append(f'<span class="key key-{index % len(COLORS)}">{esc(name)}</span>')
    axes = (f'<line x1="{left}" y1="{pad + h}" x2="{left + w}" y2="{pad + h}" class="axis"/>'
            f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{pad + h}" class="axis"/>'
            f'<text x="{left - 4}" y="{pad + 10}" text-anchor="end">{top:.4g}</text>'
            f'<text x="{left - 4}" y="{pad + h}" text-anchor="end">0</text>'
            f'<text x="{left}" y="{height - 4}">{clock(t0)}</text>'
            f'<text x="{left + w}" y="{height - 4}" text-anchor="end">{clock(t1)}</text>')
    return (f'<figure class="chart"><svg viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{esc(unit)}">{axes}{"".join(lines)}</svg>'
            f'<figcaption>{esc(unit)} {"".join(legend)}</figcaption></figure>')
