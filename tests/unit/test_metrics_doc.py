"""docs/metrics.md is exactly what the live registry renders (regenerate with
`python -m strom.observability.metrics_doc --write`): every registered metric is documented,
with its type and labels, and nothing else is."""

from pathlib import Path

import pytest

from strom.observability import metrics_doc
from strom.observability.metrics import BrokerMetrics


def test_metrics_doc_is_current() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    assert path.read_text() == metrics_doc.render(), (
        "run: python -m strom.observability.metrics_doc --write")


def test_a_metric_left_out_of_the_exercise_is_an_error(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    def skip_topics(metrics: BrokerMetrics) -> None:
        metrics.api(0, 9).handled(100, 0.001, 0.001)

    monkeypatch.setattr(metrics_doc, "exercise", skip_topics)
    with pytest.raises(AssertionError, match="strom_topic_bytes_out"):
        metrics_doc.render()
