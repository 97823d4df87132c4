"""The paper's comparators for a first-token prediction."""

from __future__ import annotations

from .prompts import PreparedTask


def clean_prediction(text: str) -> str:
    """First line, stripped: what the paper compares."""
    return text.split("\n")[0].strip()


def is_correct(prediction: str, prepared: PreparedTask, item: int) -> bool:
    task = prepared.task
    pred = clean_prediction(prediction)
    x = prepared.originals[item]
    gold = prepared.pairs[item][1].strip()
    if task.comparator == "prefix":  # knowledge: first token of a multi-token answer ("Par" for "Paris")
        return bool(pred) and bool(gold) and (gold.startswith(pred) or pred.startswith(gold))
    if task.comparator == "synonym":  # translation: any answer the source lists for the word
        return pred == gold or pred in task.alternatives.get(x, ())
    return pred == gold
