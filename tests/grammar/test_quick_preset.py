"""The issue's targets for the quick preset of the grammar line, checked on a fresh run (≈ 10 min)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iclab.runtime import finished_runs, reproduce


def assert_quick_targets(runs_dir: Path) -> None:
    """Every target the issue set for the quick preset, read from the runs' claims."""
    claims = {(r["meta"]["experiment"], c["name"]): c for r in finished_runs(runs_dir)
              for c in r["summary"]["claims"]}

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


@pytest.mark.slow
def test_quick_preset_meets_the_targets(tmp_path):
    results, _ = reproduce(tmp_path, preset="quick", only="grammar.", quiet=True)
    assert all(r.status in ("done", "skipped") for r in results), [r.error for r in results if r.error]
    assert_quick_targets(tmp_path)
