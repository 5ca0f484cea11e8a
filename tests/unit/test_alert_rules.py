"""deploy/prometheus/alerts.yml and deploy/grafana/strom.json: promtool accepts the rules and
their unit tests (deploy/prometheus/alerts_test.yml) pass, every dashboard query parses, and
every metric either of them names is one strom exports (docs/metrics.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "strom.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

PROMTOOL = shutil.which("promtool")

# Skipped only outside CI: .ci/run installs promtool (Debian's prometheus package), so under CI
# a missing promtool fails these tests.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (apt-get install prometheus); CI installs it")

# strom's own metrics, and prometheus-client's process collector.
METRIC_TOKEN = re.compile(r"\b(?:strom|process)_[a-z_]+")
SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str, cwd: Path = ROOT) -> str:
    assert PROMTOOL is not None, (
        "promtool is not installed (CI is set, so the promtool tests cannot skip)")
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", METRICS_DOC.read_text(), re.M))


def metric_names(text: str) -> set[str]:
    names = set()
    for token in METRIC_TOKEN.findall(text):
        for suffix in SUFFIXES:
            if token.endswith(suffix):
                token = token[: -len(suffix)]
                break
        names.add(token)
    return names


def dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            expr = node.get("expr")
            if isinstance(expr, str):
                exprs.append(expr)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


def test_metrics_doc_lists_metrics() -> None:
    # the parse below is what the other checks rely on
    assert {"strom_requests_total", "strom_consumer_group_status",
            "process_resident_memory_bytes"} <= documented_metrics()


def test_rules_name_only_exported_metrics() -> None:
    used = metric_names(RULES.read_text())
    assert "strom_consumer_group_status" in used and "strom_request_handle_seconds" in used
    assert used - documented_metrics() == set()


def test_rules_tests_name_only_exported_metrics() -> None:
    assert metric_names(RULES_TEST.read_text()) - documented_metrics() == set()


def test_dashboard_is_grafana_json_with_variables() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_dashboard_names_only_exported_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    used = metric_names("\n".join(exprs))
    assert {"strom_requests_total", "strom_consumer_group_lag", "strom_connections",
            "strom_event_loop_lag_seconds", "process_resident_memory_bytes"} <= used
    assert used - documented_metrics() == set()


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert "SUCCESS" in out


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each dashboard query, with Grafana's variables filled in, as a recording rule: promtool
    parses it as PromQL."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs()):
        expr = (expr.replace("$__rate_interval", "1m").replace("$instance", ".*"))
        lines += [f"      - record: dashboard_query_{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text("\n".join(lines) + "\n")
    promtool("check", "rules", str(path))
