"""Every registered experiment has a tiny end-to-end run in the fast tier (plain `pytest`).

The map below names, per experiment, the test that runs it end to end at toy scale (compute,
figures, verdicts, and a redraw from the saved results: `check_redraw` in tests/conftest.py). A new experiment fails `test_the_map_covers_every_experiment` until it has
one; a renamed, deleted or `slow`-marked test fails `test_each_named_test_is_in_the_fast_tier`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from iclab.runtime import load_experiments, load_lines

ROOT = Path(__file__).resolve().parents[1]
SG_STRUCT = "tests/spinglass/test_experiments_structure.py::"
SG_TRAIN = "tests/spinglass/test_experiments_training.py::"
SG_PHASES = "tests/spinglass/test_experiments_phases.py::"
GR = "tests/grammar/test_experiments.py::"
TV = "tests/taskvectors/test_verdicts.py::test_experiment_pipeline_on_a_tiny_model"

END_TO_END = {
    "spinglass.fig1": SG_STRUCT + "test_fig1_quick",
    "spinglass.fig2": SG_TRAIN + "test_fig2_quick",
    "spinglass.fig3": SG_STRUCT + "test_fig3_quick",
    "spinglass.fig4a": SG_PHASES + "test_fig4a_contrast_grows_with_P_and_N",
    "spinglass.fig4b": SG_TRAIN + "test_fig4b_paper_values_and_redraw",
    "spinglass.figS1": SG_TRAIN + "test_figS1_small",
    "spinglass.figS2": SG_STRUCT + "test_figS2_quick",
    "spinglass.figS3": SG_STRUCT + "test_figS3_quick",
    "spinglass.figS4": SG_TRAIN + "test_figS4_small",
    "spinglass.figS5": SG_STRUCT + "test_figS5_quick",
    "spinglass.figS6": SG_PHASES + "test_figs6_restarts_reach_the_unique_solution",
    "spinglass.figS7": SG_STRUCT + "test_figS7_quick",
    "spinglass.figS8": SG_PHASES + "test_figs8_small_run_trains_saves_curves_and_half_budgets",
    "spinglass.pool": SG_PHASES + "test_pool_memorises_at_small_M_and_learns_in_context_at_large_M",
    "grammar.train": GR + "test_train_point_learns_and_is_reused",
    "grammar.icl": GR + "test_icl_compares_models_with_the_ideal_predictor",
    "grammar.cot": GR + "test_claims_are_judged_over_training_seeds",
    "grammar.ablation": GR + "test_ablation_and_emergence_grid",
    "grammar.emergence": GR + "test_ablation_and_emergence_grid",
    "grammar.probes": GR + "test_probes_against_their_baselines_and_task_vectors_run",
    "grammar.taskvectors": GR + "test_probes_against_their_baselines_and_task_vectors_run",
    "grammar.recombination": GR + "test_recombination_world_beside_the_default",
    "grammar.theory": GR + "test_theory_scores_every_task_type_against_the_ideal",
    **{name: f"{TV}[{name}]" for name in (
        "taskvectors.main", "taskvectors.conflict", "taskvectors.vocab", "taskvectors.tsne",
        "taskvectors.templates", "taskvectors.function_vectors", "taskvectors.profile")},
}


def test_the_map_covers_every_experiment():
    lines = load_lines()  # the research lines' experiments (the runtime tests add toy ones: not ours to map)
    registered = {name for name in load_experiments() if name.split(".")[0] in lines}
    assert not registered - END_TO_END.keys(), "give these experiments a tiny end-to-end test and list it here"
    assert not END_TO_END.keys() - registered, "these are no longer registered"


def test_each_named_test_is_in_the_fast_tier():
    files = sorted({node.split("::")[0] for node in END_TO_END.values()})
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-m", "not slow", "-p", "no:cacheprovider"]
    out = subprocess.run([*cmd, *files], cwd=ROOT, capture_output=True, text=True, timeout=300)
    collected = set(out.stdout.split())
    missing = sorted(node for node in set(END_TO_END.values()) if node not in collected)
    assert not missing, f"not collected in the fast tier: {missing}\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
