"""`strom cluster status|brokers|placement|leases|move` against real brokers: one on the
local log, and two sharing a PostgreSQL database (each lists both; `move` moves a partition's
lease to the broker named and `--balanced` gives it back), with errors that say what to do."""

from __future__ import annotations

from click.testing import CliRunner, Result

from strom.cli.main import cli
from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, unique_name
from tests.integration.test_cluster_admin import leaders, new_topic
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


def test_leases_and_move_on_one_broker(broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("leased"), 2)
    output = run(bootstrap, "cluster", "leases", topic).output
    [me, *partitions] = table_rows(output)
    assert me == ["1", f"127.0.0.1:{broker.port}", "-", "2"]
    assert partitions == [[topic, str(p), "1", "0", "1", "1", ""] for p in range(2)]
    assert output.rstrip().endswith("2 partitions")
    assert run(bootstrap, "cluster", "move", topic, "0", "1").output == (
        f"{topic}-0 moved: led by broker 1 (leader epoch 0)\n")
    refused = run(bootstrap, "cluster", "move", topic, "0", "2", code=1).output
    assert "broker 2, but no such broker is registered" in refused
    assert "`strom cluster brokers` lists the live brokers" in refused
    assert "has no reassignment to cancel" in run(bootstrap, "cluster", "move", topic, "0",
                                                  "--balanced", code=1).output
    assert f"topic {topic} has no partition 5 (it has 2 partitions)" in run(
        bootstrap, "cluster", "move", topic, "5", "1", code=1).output
    assert "no-such-topic does not exist" in run(
        bootstrap, "cluster", "leases", "no-such-topic", code=1).output
    assert "--balanced" in run(bootstrap, "cluster", "move", topic, "0", code=2).output
    assert "not a list of node ids" in run(bootstrap, "cluster", "move", topic, "0", "1,x",
                                           code=2).output
    assert "TLS handshake failed" in run(
        bootstrap, "cluster", "leases", "-X", "security.protocol=SSL", code=1).output
    assert "SASL needs -X sasl.username" in run(
        bootstrap, "cluster", "leases", "-X", "security.protocol=SASL_PLAINTEXT",
        "-X", "sasl.mechanism=PLAIN", code=1).output


def test_move_and_leases_on_two_brokers(postgres_url: str) -> None:
    with EmbeddedBroker(settings={**FAST, "node.id": "1"}, storage=postgres_url) as one, \
            EmbeddedBroker(settings={**FAST, "node.id": "2"}, storage=postgres_url) as two:
        eventually(lambda: listed(one.bootstrap_servers) == [1, 2] == listed(
            two.bootstrap_servers), "the brokers never listed each other")
        topic = new_topic([one, two], 4, 2)
        rows = table_rows(run(two.bootstrap_servers, "cluster", "leases", topic).output)
        counts = {r[0]: int(r[3]) for r in rows if len(r) == 4}
        assert set(counts) == {"1", "2"} and sum(counts.values()) == 4
        balanced, _, _ = leaders(one, topic)[0]
        other = 2 if balanced == 1 else 1
        moved = run(one.bootstrap_servers, "cluster", "move", topic, "0", str(other)).output
        assert moved.startswith(f"{topic}-0 moved: led by broker {other} (leader epoch ")
        row = next(r for r in table_rows(run(one.bootstrap_servers, "cluster", "leases",
                                             topic).output) if r[:2] == [topic, "0"])
        assert row[2] == str(other) and int(row[3]) >= 1  # the lease changed hands
        back = run(two.bootstrap_servers, "cluster", "move", topic, "0", "--balanced").output
        assert back.startswith(f"{topic}-0 follows the balanced placement again")
        eventually(lambda: leaders(one, topic)[0][0] == balanced,
                   "the partition never went back")
