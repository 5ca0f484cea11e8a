"""The shared `--output table|json` helper and the progress bar of the client commands."""

from __future__ import annotations

import io
import json

import click
import pytest
from click.testing import CliRunner

from strom.cli.common import (
    Column,
    Progress,
    output_option,
    print_json,
    records,
    render,
    table_cell,
    table_of,
)

COLUMNS = ["topic", "partition", "log end offset", Column("in-sync", key="isr")]
ROWS = [["orders", 0, 7, [1, 2]], ["pay[ments]", 1, None, []]]


def test_records_keep_numbers_and_null_with_snake_case_keys() -> None:
    assert records(COLUMNS, ROWS) == [
        {"topic": "orders", "partition": 0, "log_end_offset": 7, "isr": [1, 2]},
        {"topic": "pay[ments]", "partition": 1, "log_end_offset": None, "isr": []}]
    assert [list(r) for r in records(["b", "a"], [[1, 2]])] == [["b", "a"]]  # column order
    with pytest.raises(ValueError, match="2 values for 1 columns"):
        records(["only"], [[1, 2]])


def test_table_cells() -> None:
    assert [table_cell(v) for v in (None, True, False, [1, 2], [], ("a", "b"), 3, "x")] == [
        "-", "yes", "no", "1,2", "none", "a,b", 3, "x"]
    table = table_of(COLUMNS, ROWS, title="t")
    assert [c.header for c in table.columns] == ["topic", "partition", "log end offset",
                                                  "in-sync"]
    assert table.row_count == 2 and table.title == "t"


@click.command()
@click.option("--keyed", is_flag=True)
@output_option
def show(keyed: bool, output: str) -> None:
    click.echo("a message", err=True)
    render(output, COLUMNS, ROWS, title="things", key="things" if keyed else None)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(show, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_render_json_is_one_document_on_stdout() -> None:
    code, out, err = invoke("--output", "json")
    assert code == 0 and err == "a message\n"
    assert json.loads(out) == records(COLUMNS, ROWS)
    code, out, _ = invoke("--output", "json", "--keyed")
    assert json.loads(out) == {"things": records(COLUMNS, ROWS)}


def test_render_table_is_the_default() -> None:
    code, out, err = invoke()
    assert code == 0 and err == "a message\n"
    lines = out.splitlines()
    assert "things" in lines[0]
    assert any("pay[ments]" in line and "-" in line for line in lines)  # no markup, None as -
    assert any("orders" in line and "1,2" in line for line in lines)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_output_rejects_other_formats() -> None:
    code, _, err = invoke("--output", "yaml")
    assert code == 2 and "'yaml' is not one of 'table', 'json'" in err


def test_print_json_keeps_order_and_unicode(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"z": 1, "a": "ü", "n": None, "f": 1.5})
    out = capsys.readouterr().out
    assert out.index('"z"') < out.index('"a"') and "ü" in out
    assert json.loads(out) == {"z": 1, "a": "ü", "n": None, "f": 1.5}


def test_progress_is_silent_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress("work", 10) as progress:  # pytest's stderr is not a terminal
        assert not progress.enabled
        progress.advance(5)
    assert capsys.readouterr() == ("", "")


def test_progress_draws_on_stderr_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws as on a terminal
    with Progress("committing", 4, enabled=True) as progress:
        assert progress.enabled
        progress.advance(4)
    assert "committing" in stderr.getvalue()
