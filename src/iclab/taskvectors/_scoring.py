"""How a prediction is scored: the paper's first token, or the whole answer.

`first-token` (the paper's): the model's first generated token against the gold answer, with the
paper's single-token filter on the pairs, so library results stay comparable with its tables.
`full`: greedy decoding to the end of the line (or a bound from the longest gold answer), exact
match on the whole answer; for tasks whose answers take several tokens.
"""

from __future__ import annotations

from ._prompts import PreparedTask

SCORINGS = ("first-token", "full")


def clean_prediction(text: str) -> str:
    """First line, stripped: what is compared."""
    return text.split("\n")[0].strip()


def is_correct(prediction: str, prepared: PreparedTask, item: int, scoring: str = "first-token") -> bool:
    task = prepared.task
    pred = clean_prediction(prediction)
    x = prepared.originals[item]
    gold = prepared.pairs[item][1].strip()
    if task.comparator == "synonym":  # translation: any answer the source lists for the word
        return pred == gold or pred in task.alternatives.get(x, ())
    if task.comparator == "prefix" and scoring == "first-token":  # the first token of "Paris" is "Par"
        return bool(pred) and bool(gold) and (gold.startswith(pred) or pred.startswith(gold))
    return pred == gold


def acceptable(prepared: PreparedTask, item: int) -> tuple[str, ...]:
    """Every answer full scoring accepts for pair `item`: the gold one, and for synonym tasks every listed one."""
    gold = prepared.pairs[item][1].strip()
    if prepared.task.comparator == "synonym":
        return (gold, *prepared.task.alternatives.get(prepared.originals[item], ()))
    return (gold,)


def could_still_match(text: str, answers: tuple[str, ...]) -> bool:
    """Whether a generation that so far reads `text` can still end as one of `answers` under full scoring
    (its first line, stripped, equal to one of them). A partly decoded character ('\\ufffd') keeps it going."""
    if "\ufffd" in text:
        return True
    if "\n" in text:
        return clean_prediction(text) in answers
    s = text.lstrip()
    return any(a.startswith(s) or a == s.rstrip() for a in answers)
