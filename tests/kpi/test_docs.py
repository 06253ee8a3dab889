"""docs/kpi.md and the code say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

from watergrid.kpi import definitions, facts

DOC = (Path(__file__).resolve().parents[2] / "docs" / "kpi.md").read_text(encoding="utf-8")


def test_every_rule_named_in_the_code_is_written_down() -> None:
    code = Path(facts.__file__).read_text(encoding="utf-8")
    rules = set(re.findall(r"\b([RH][1-6])\b", code))
    assert rules >= {"R1", "R2", "R3", "R4", "R5", "H1", "H2", "H3", "H4", "H5", "H6"}
    for r in rules:
        assert f"**{r}" in DOC, f"rule {r} missing from docs/kpi.md"


def test_headline_metrics_targets_and_histogram_are_documented() -> None:
    for code in definitions.HEADLINE:
        assert definitions.METRICS[code].name_zh in DOC
    edges = ", ".join(f"{e:g}" for e in definitions.BUCKET_EDGES_H)
    assert edges in DOC
    assert f"within {definitions.RISK_WINDOW_DAYS} days" in DOC
    assert "99 % / 95 %" in DOC and definitions.METRICS["response_rate"].green == 0.99
