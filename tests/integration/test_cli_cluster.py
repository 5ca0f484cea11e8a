"""`strom cluster status|brokers|placement` against real brokers: one on the local log, and
two sharing a PostgreSQL database (each lists both)."""

from __future__ import annotations

from click.testing import CliRunner, Result

from strom.cli.main import cli
from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, unique_name
from tests.integration.test_postgres_membership import FAST, eventually, listed


def run(bootstrap: str, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [*args, "-b", bootstrap])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def table_rows(output: str) -> list[list[str]]:
    """The cells of a rich table's body rows."""
    return [[cell.strip() for cell in line.strip("│").split("│")]
            for line in output.splitlines() if line.startswith("│")]


def test_status_brokers_and_placement_on_one_broker(broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("placed"), 3)
    status = run(bootstrap, "cluster", "status").output
    assert "1 broker," in status and "controller 1" in status
    [me] = table_rows(status)
    assert me[0] == "1" and me[1] == f"127.0.0.1:{broker.port}" and me[4] == "yes"
    assert int(me[3]) >= 3  # it leads every partition, the new topic's among them
    assert table_rows(run(bootstrap, "cluster", "brokers").output) == [
        ["1", "127.0.0.1", str(broker.port), "-"]]
    assert table_rows(run(bootstrap, "cluster", "placement", topic).output) == [
        [topic, str(p), "1", "1", "1"] for p in range(3)]
    missing = run(bootstrap, "cluster", "placement", "no-such-topic", code=1)
    assert "no-such-topic does not exist" in missing.output


def test_brokers_sharing_a_database_are_all_listed(postgres_url: str) -> None:
    with EmbeddedBroker(settings={**FAST, "node.id": "1"}, storage=postgres_url) as one, \
            EmbeddedBroker(settings={**FAST, "node.id": "2"}, storage=postgres_url) as two:
        eventually(lambda: listed(one.bootstrap_servers) == [1, 2], "broker 2 not listed")
        rows = table_rows(run(one.bootstrap_servers, "cluster", "brokers").output)
        assert [(r[0], r[2]) for r in rows] == [("1", str(one.port)), ("2", str(two.port))]
        assert "2 brokers," in run(two.bootstrap_servers, "cluster", "status").output
