"""The paper's published numbers, to print beside ours (Hendel, Geva, Globerson 2023, appendix table).

Each cell is (baseline, task vector, ICL) accuracy, first token, n = 50 test (100 baseline) episodes,
k = 5 demonstrations, for the paper's seven models (2.8B-30B parameters, fp16 originals). Copied
from the camera-ready table committed in roeehendel/icl_task_vectors
(outputs/figures/main_experiment_results_table.tex).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ._stats import MIN_GAIN
from ._tasks import SUBSTITUTES

PAPER_MODELS = ("LLaMA 7B", "LLaMA 13B", "LLaMA 30B", "GPT-J 6B", "Pythia 2.8B", "Pythia 6.9B", "Pythia 12B")

# task -> one (baseline, task_vector, icl) triple per model in PAPER_MODELS
PAPER_TABLE: dict[str, list[tuple[float, float, float]]] = {
    "algorithmic_list_first": [(0.87, 0.98, 1.0), (0.77, 1.0, 1.0), (0.96, 0.98, 1.0), (0.3, 0.74, 0.98), (0.69, 0.96, 1.0), (0.43, 1.0, 0.98), (0.53, 0.98, 0.96)],
    "algorithmic_list_last": [(0.03, 1.0, 1.0), (0.07, 0.7, 0.92), (0.02, 0.64, 0.96), (0.24, 0.64, 1.0), (0.06, 0.98, 1.0), (0.08, 0.6, 0.98), (0.09, 0.98, 1.0)],
    "algorithmic_next_letter": [(0.03, 0.94, 0.88), (0.31, 1.0, 0.94), (0.3, 0.98, 0.96), (0.16, 1.0, 0.86), (0.42, 0.86, 0.9), (0.01, 0.66, 0.86), (0.15, 0.96, 0.76)],
    "algorithmic_prev_letter": [(0.04, 0.52, 0.58), (0.05, 0.34, 0.5), (0.02, 0.56, 0.8), (0.1, 0.36, 0.42), (0.01, 0.22, 0.48), (0.04, 0.28, 0.32), (0.0, 0.24, 0.42)],
    "algorithmic_to_lower": [(0.0, 0.74, 1.0), (0.0, 0.94, 1.0), (0.0, 1.0, 1.0), (0.0, 0.46, 1.0), (0.0, 1.0, 1.0), (0.0, 1.0, 1.0), (0.02, 1.0, 1.0)],
    "algorithmic_to_upper": [(0.0, 0.6, 1.0), (0.0, 0.94, 1.0), (0.0, 0.9, 1.0), (0.0, 0.94, 1.0), (0.0, 1.0, 1.0), (0.0, 0.94, 1.0), (0.0, 0.98, 1.0)],
    "knowledge_country_capital": [(0.28, 0.82, 0.86), (0.17, 0.84, 0.86), (0.27, 0.72, 0.88), (0.19, 0.72, 0.8), (0.18, 0.7, 0.76), (0.21, 0.76, 0.82), (0.19, 0.58, 0.82)],
    "knowledge_location_continent": [(0.02, 0.68, 0.72), (0.01, 0.7, 0.8), (0.01, 0.7, 0.86), (0.03, 0.58, 0.7), (0.01, 0.62, 0.72), (0.01, 0.62, 0.78), (0.01, 0.68, 0.8)],
    "knowledge_location_religion": [(0.12, 0.84, 0.94), (0.1, 0.74, 0.84), (0.05, 0.7, 0.88), (0.09, 0.68, 0.78), (0.08, 0.76, 0.82), (0.1, 0.8, 0.8), (0.07, 0.64, 0.78)],
    "knowledge_person_language": [(0.02, 0.68, 0.78), (0.02, 0.76, 0.88), (0.01, 0.72, 0.9), (0.02, 0.82, 0.82), (0.0, 0.82, 0.82), (0.01, 0.76, 0.8), (0.01, 0.72, 0.86)],
    "linguistic_antonyms": [(0.33, 0.74, 0.76), (0.19, 0.74, 0.8), (0.37, 0.76, 0.82), (0.43, 0.68, 0.78), (0.37, 0.68, 0.76), (0.33, 0.72, 0.74), (0.34, 0.72, 0.74)],
    "linguistic_plural_singular": [(0.15, 0.84, 0.88), (0.24, 0.84, 0.88), (0.21, 0.84, 0.9), (0.08, 0.9, 0.98), (0.13, 0.7, 0.78), (0.14, 0.78, 0.88), (0.18, 0.8, 0.84)],
    "linguistic_present_simple_gerund": [(0.0, 0.74, 0.9), (0.0, 0.96, 0.96), (0.0, 0.76, 0.98), (0.0, 0.88, 0.98), (0.0, 0.86, 0.96), (0.0, 0.82, 0.94), (0.0, 0.86, 0.96)],
    "linguistic_present_simple_past_simple": [(0.02, 0.94, 0.92), (0.01, 1.0, 0.98), (0.02, 0.98, 1.0), (0.02, 0.76, 0.96), (0.03, 0.8, 0.92), (0.02, 0.88, 0.96), (0.01, 0.76, 0.94)],
    "translation_en_es": [(0.07, 0.78, 0.76), (0.05, 0.78, 0.82), (0.07, 0.74, 0.78), (0.14, 0.34, 0.56), (0.1, 0.26, 0.76), (0.11, 0.46, 0.7), (0.1, 0.44, 0.72)],
    "translation_en_fr": [(0.04, 0.78, 0.88), (0.15, 0.7, 0.84), (0.1, 0.8, 0.86), (0.16, 0.36, 0.54), (0.16, 0.28, 0.6), (0.21, 0.36, 0.6), (0.16, 0.48, 0.54)],
    "translation_es_en": [(0.21, 0.68, 0.92), (0.29, 0.76, 0.88), (0.24, 0.7, 0.88), (0.06, 0.7, 0.74), (0.08, 0.76, 0.82), (0.06, 0.72, 0.82), (0.05, 0.68, 0.8)],
    "translation_fr_en": [(0.15, 0.66, 0.7), (0.25, 0.54, 0.72), (0.2, 0.62, 0.78), (0.13, 0.66, 0.76), (0.1, 0.64, 0.82), (0.14, 0.66, 0.74), (0.14, 0.68, 0.8)],
}

SOURCE = "appendix table (main_experiment_results_table.tex), §4.1"
SOURCE_AVERAGES = "per-model averages of the appendix table over tasks with ICL − baseline ≥ 0.20, §4.2"


def _kept(cell: tuple[float, float, float]) -> bool:
    """The paper's filter on its own two-decimal numbers, compared exactly (as decimals, not floats)."""
    return Fraction(str(cell[2])) - Fraction(str(cell[0])) >= MIN_GAIN


def paper_model_means() -> dict[str, tuple[float, float, float, int]]:
    """Per paper model: mean baseline, task vector and ICL over its filtered tasks, and how many it kept."""
    out = {}
    for m, model in enumerate(PAPER_MODELS):
        cells = [cells[m] for cells in PAPER_TABLE.values() if _kept(cells[m])]
        bl, tv, icl = np.mean(cells, axis=0)
        out[model] = (float(bl), float(tv), float(icl), len(cells))
    return out


def paper_tv_over_icl() -> float:
    """The paper's headline: TV / ICL per model (ratio of the filtered means), averaged over its 7 models."""
    return float(np.mean([tv / icl for _, tv, icl, _ in paper_model_means().values()]))


def paper_original(task: str) -> str:
    """The paper's task that `task` stands for (itself, or the task a substitute replaces)."""
    return {v: k for k, v in SUBSTITUTES.items()}.get(task, task)


def paper_reference(task: str) -> dict[str, float | str]:
    """The paper's mean and range over its seven models for `task` (or for the task it substitutes)."""
    original = paper_original(task)
    cols = ("baseline", "task_vector", "icl")
    if original not in PAPER_TABLE:
        return {"paper_task": "", **{f"paper_{c}{s}": np.nan for c in cols for s in ("", "_min", "_max")}}
    cells = np.array(PAPER_TABLE[original])  # (7 models, 3)
    out: dict[str, float | str] = {"paper_task": original}
    for j, c in enumerate(cols):
        out.update({f"paper_{c}": round(float(cells[:, j].mean()), 3), f"paper_{c}_min": float(cells[:, j].min()),
                    f"paper_{c}_max": float(cells[:, j].max())})
    return out
