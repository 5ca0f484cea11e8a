"""The run's report: a dict (written as JSON), the same as markdown, and progress lines."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.fuzz.broker import Broker
from bench.fuzz.findings import pretty_hex
from bench.fuzz.logscan import LogCounts
from bench.fuzz.tally import Tally
from bench.fuzz.wire import OUTCOMES

if TYPE_CHECKING:
    from bench.fuzz.run import Run

HEADINGS = {"response": "response", "close": "clean close", "timeout": "timeout",
            "reset": "reset", "cut": "cut by the fuzzer"}
SECURITY_CATEGORIES = ("pre-auth", "sasl", "tls", "unauthorized")


def progress_line(tally: Tally, broker: Broker, rounds: int, rounds_ok: int,
                  findings: int) -> str:
    totals = tally.outcome_totals()
    frames = sum(totals.values())
    shares = " ".join(f"{o} {totals.get(o, 0):,}" for o in OUTCOMES)
    return (f"frames {frames:,} ({shares}) | liveness {rounds_ok}/{rounds} ok | "
            f"RSS {broker.rss.end / 1024:.0f} MiB (peak {broker.rss.peak_sampled / 1024:.0f}) "
            f"| findings {findings}")


def build(run: Run, log: LogCounts) -> dict[str, Any]:
    findings = [asdict(f) for f in run.findings.all()]
    reproduced = run.info.get("reproduced", {})
    for signature in log.signatures.values():
        findings.append({"kind": "traceback", "title": f"traceback: {signature.key}",
                         "detail": signature.sample
                         + ("\nreproduced on replay" if reproduced.get(signature.key)
                            else ""),
                         "frames": [pretty_hex(f) for f in signature.frames[:1]],
                         "count": signature.count})
    rss = run.broker.rss
    outcomes = run.tally.as_json()
    advertised = {tuple(pair) for pair in run.info.get("advertised_pairs", [])}
    outcomes["versions_answered"] = len(run.tally.versions & advertised)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "options": {k: str(v) for k, v in vars(run.options).items()},
        "broker": {"own": run.broker.own, "bootstrap": run.broker.bootstrap,
                   "exit_status": run.info.get("broker_exit_status")},
        "info": {k: v for k, v in run.info.items()
                 if k not in ("reproduced", "advertised_pairs")},
        "frames": run.tally.total(),
        "outcomes": outcomes,
        "rss_kib": {"broker_start": run.info.get("rss_broker_start_kib"),
                    "fuzz_start": rss.start, "peak_sampled": rss.peak_sampled,
                    "end": rss.end, "vm_hwm": rss.hwm, "samples": rss.samples[::10]},
        "log": {"lines": log.lines, "warnings": log.warnings, "errors": log.errors,
                "tracebacks": log.tracebacks, "signatures": len(log.signatures),
                "auth_failures": log.auth_failures,
                "error_messages": dict(sorted(log.error_messages.items(),
                                              key=lambda kv: -kv[1])[:20])},
        "liveness": [{"index": r.index, "at_frames": r.at_frames, "ok": r.ok,
                      "checks": [asdict(c) for c in r.checks]} for r in run.rounds],
        "abuse": [asdict(s) for s in run.scenarios],
        "state_checks": [asdict(c) for c in run.checks],
        "findings": findings,
        "summary": _summary(findings, run),
    }


def _summary(findings: list[dict[str, Any]], run: Run) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for finding in findings:
        kinds[finding["kind"]] = kinds.get(finding["kind"], 0) + 1
    return {"findings": len(findings), "by_kind": kinds,
            "crashes": kinds.get("crash", 0), "hangs": kinds.get("hang", 0),
            "liveness_rounds": len(run.rounds),
            "liveness_ok": sum(r.ok for r in run.rounds),
            "state_checks_ok": all(c.ok for c in run.checks) and bool(run.checks)}


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz-report.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "fuzz-report.md").write_text(markdown(result))


def _outcome_table(title: str, rows: dict[str, dict[str, int]]) -> list[str]:
    lines = [f"| {title} | frames | " + " | ".join(HEADINGS.values()) + " |",
             "|---|---:|" + "---:|" * len(HEADINGS)]
    for name, counts in rows.items():
        lines.append(f"| {name} | {counts['frames']:,} | "
                     + " | ".join(f"{counts[o]:,}" for o in OUTCOMES) + " |")
    return lines


def _checks_table(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["| check | result | detail |", "|---|---|---|"]
    for check in checks:
        detail = check["detail"].replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {check['name']} | {'ok' if check['ok'] else '**FAILED**'} | "
                     f"{detail} |")
    return lines


def _replays(replays: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple[Any, str], list[float]] = {}
    for replay in replays:
        groups.setdefault((replay["api_key"], replay["verdict"]), []).append(
            replay["elapsed_s"])
    return [f"- API key {key}: {verdict} (x{len(times)}, after {min(times)}-{max(times)} s)"
            for (key, verdict), times in sorted(groups.items(), key=str)] or ["- none"]


def _bombs(bombs: list[dict[str, Any]]) -> list[str]:
    """One row per kind and codec: how many were sent and what they got."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for bomb in bombs:
        groups.setdefault((bomb["kind"], bomb["codec"]), []).append(bomb)
    lines = ["| kind | codec | sent | records | frame bytes | answers | slowest s |",
             "|---|---|---:|---:|---:|---|---:|"]
    for (kind, codec), sent in groups.items():
        answers = sorted({f"{b['outcome']} {b['error'] or ''}".strip() for b in sent})
        lines.append(f"| {kind} | {codec} | {len(sent)} | {sent[0]['records']:,} | "
                     f"{sent[0]['frame_bytes']:,} | {', '.join(answers)} | "
                     f"{max(b['elapsed_s'] for b in sent)} |")
    return lines


def _security(result: dict[str, Any]) -> list[str]:
    """The --security section: frames per scenario and what the oracles saw."""
    o = result["outcomes"]
    frames = {c: o["categories"].get(c, {}).get("frames", 0) for c in SECURITY_CATEGORIES}
    lines = ["## Security (--security)", "",
             f"{sum(frames.values()):,} frames from the security workers ("
             + ", ".join(f"{c} {n:,}" for c, n in frames.items()) + f") of "
             f"{result['frames']:,} in all; listeners {result['info'].get('listeners')}; "
             f"{result['info'].get('seeds_fuzz_user')} seeds for the fuzz user.", ""]
    lines += _outcome_table("scenario", o["scenarios"])
    lines += ["", "| what the security oracles saw | count |", "|---|---:|"]
    lines += [f"| {name} | {count:,} |" for name, count in o["security_checks"].items()]
    lines += [f"| broker log: authentication failures | {result['log']['auth_failures']:,} |"]
    for name, t in o["security_times"].items():
        lines.append(f"| {name} (s) | {t['count']:,} ({t['min_s']}-{t['max_s']}, mean "
                     f"{t['mean_s']}) |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    o, s, rss = result["outcomes"], result["summary"], result["rss_kib"]
    opts = result["options"]
    lines = [f"# strom fuzz run, {result['date']}",
             f"seed {opts['seed']}, {opts['duration_s']} s, {opts['workers']} workers"
             + (f" and {result['info'].get('security_workers')} security workers"
                if opts.get("security") == "True" else "")
             + f", broker {result['broker']['bootstrap']}",
             "", f"**{s['findings']} findings** {s['by_kind']}; crashes {s['crashes']}, "
             f"hangs {s['hangs']}, liveness {s['liveness_ok']}/{s['liveness_rounds']} rounds "
             f"ok, state checks {'ok' if s['state_checks_ok'] else 'FAILED'}.", "",
             "## Counts and outcomes", ""]
    totals = {o_: sum(c[o_] for c in o["categories"].values()) for o_ in OUTCOMES}
    rows = dict(o["categories"])
    rows["**total**"] = {"frames": result["frames"], **totals}
    lines += _outcome_table("category", rows)
    lines += ["", f"- connections {o['connections']:,}; ApiVersions preambles "
              f"{o['preambles_answered']:,}/{o['preambles_sent']:,} answered; correlation-id "
              f"mismatches {o['correlation_mismatches']}; Produce acks=0 timeouts (no answer "
              f"due) {o['no_answer_due']}; (api, version) pairs answered "
              f"{o['versions_answered']} of {result['info'].get('advertised_versions')} "
              f"advertised",
              f"- seeds: {result['info'].get('seeds_schema')} from schemas, "
              f"{result['info'].get('seeds_recorded')} recorded",
              f"- harness errors (bugs of the fuzzer, not of the broker): "
              f"{o['harness_errors'] or 'none'}", "",
              "## Per mutator and batch corruption", ""]
    lines += _outcome_table("mutator", o["labels"])
    if o.get("scenarios"):
        lines += ["", *_security(result)]
    lines += ["", "## Timeouts replayed", "", *_replays(o["replays"]),
              "", "## Compression bombs", "", *_bombs(o["bombs"])]
    lines += ["", "## Protocol abuse", "", "| scenario | expected | observed | ok |",
              "|---|---|---|---|"]
    lines += [f"| {a['name']} | {a['expected']} | {a['observed']} | "
              f"{'skipped' if a['skipped'] else 'ok' if a['ok'] else '**NO**'} |"
              for a in result["abuse"]]
    lines += ["", "## Liveness", ""]
    for round_ in result["liveness"]:
        lines += [f"Round {round_['index']} at {round_['at_frames']:,} frames: "
                  f"{'ok' if round_['ok'] else 'FAILED'}", ""]
        if not round_["ok"]:
            lines += [*_checks_table(round_["checks"]), ""]
    lines += ["## State checks at the end", "", *_checks_table(result["state_checks"]), "",
              "## Broker", "",
              f"- RSS KiB: broker start {rss['broker_start']}, fuzz start {rss['fuzz_start']}, "
              f"peak sampled {rss['peak_sampled']}, end {rss['end']}, VmHWM {rss['vm_hwm']}",
              f"- log: {result['log']['lines']:,} lines, {result['log']['warnings']:,} "
              f"WARNING, {result['log']['errors']:,} ERROR records, "
              f"{result['log']['tracebacks']:,} tracebacks in {result['log']['signatures']} "
              f"signatures; exit status {result['broker']['exit_status']}"]
    lines += [f"- ERROR without traceback (x{n}): `{m}`"
              for m, n in result["log"]["error_messages"].items()]
    lines += ["", "## Findings", ""]
    for i, finding in enumerate(result["findings"], 1):
        detail = finding["detail"].replace("\n", "\n   > ")
        lines.append(f"{i}. **[{finding['kind']}] {finding['title']}** (x{finding['count']})"
                     + (f"\n   > {detail}" if detail else ""))
        lines += [f"   - `{frame}`" for frame in finding["frames"]]
    return "\n".join(lines) + "\n"
