"""The issue's targets for the quick preset of the grammar line, checked on a fresh run (≈ 11 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iclab.runtime import reproduce


@pytest.mark.slow
def test_quick_preset_meets_the_targets(tmp_path):
    results, _ = reproduce(tmp_path, preset="quick", only="grammar.", quiet=True)
    assert all(r.status == "done" for r in results), [r.error for r in results if r.error]
    claims = {}
    for r in results:
        for c in json.loads((Path(r.path) / "summary.json").read_text())["claims"]:
            claims[(r.experiment, c["name"])] = c

    def passed(experiment: str, start: str) -> bool:
        hits = [c for (e, n), c in claims.items() if e == experiment and n.startswith(start)]
        assert hits, (experiment, start)
        return all(c["passed"] for c in hits)

    assert passed("grammar.icl", "primitive ICL, largest model")  # well above chance
    assert passed("grammar.icl", "primitive ICL at n = 16: largest vs smallest")
    assert passed("grammar.icl", "held-out compositions at n = 16: with steps vs direct")
    assert passed("grammar.icl", "idealised predictor")
    assert passed("grammar.cot", "held-out compositions, n = 16: generated steps vs direct")
    assert passed("grammar.ablation", "primitive ICL at n = 16: full vs")
    assert passed("grammar.emergence", "grid span")
    assert passed("grammar.emergence", "ICL at the largest size")
    for target in ("role", "template", "mid"):
        assert passed("grammar.probes", f"{target}: best-layer probe, trained vs random")
        assert passed("grammar.probes", f"{target}: that probe vs the token type alone")
