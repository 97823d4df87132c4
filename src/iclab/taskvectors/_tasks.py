"""The task library: the paper's 18 tasks in four categories, plus tasks users load from a file.

A task is a finite list of (input, output) pairs with a category and a comparator. Algorithmic
tasks are generated; the others are read from the JSON files shipped in `data/` (sources and
licences in `data/README.md`, built by `scripts/build_task_data.py`). Two of the paper's
knowledge tasks (CounterFact) have no offline data and are replaced by documented substitutes.
"""

from __future__ import annotations

import csv
import json
import string
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from iclab.runtime import IclabError
from iclab.runtime import make_rng

CATEGORIES = ("algorithmic", "translation", "linguistic", "knowledge")
COMPARATORS = ("exact", "prefix", "synonym")


@dataclass(frozen=True)
class Task:
    """A few-shot task: `pairs` maps inputs to their gold output."""

    name: str  # e.g. "translation_en_fr"
    category: str  # algorithmic | translation | linguistic | knowledge | user
    pairs: tuple[tuple[str, str], ...]
    comparator: str = "exact"  # exact; prefix (either string a prefix of the other); synonym (any listed answer)
    single_token: bool = False  # keep only pairs whose output is one token for the model's tokenizer
    source: str = ""  # where the data comes from
    # For the synonym comparator: every acceptable answer per input (defaults to the gold output).
    alternatives: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.comparator not in COMPARATORS:
            raise IclabError(f"task {self.name!r}: comparator must be one of {COMPARATORS}, got {self.comparator!r}")
        if len(self.pairs) < 2:
            raise IclabError(f"task {self.name!r}: needs at least 2 input->output pairs, has {len(self.pairs)}")

    @property
    def answers(self) -> dict[str, str]:
        return dict(self.pairs)

    def with_pairs(self, pairs: list[tuple[str, str]]) -> "Task":
        """The same task restricted to `pairs` (e.g. after single-token filtering)."""
        return Task(self.name, self.category, tuple(pairs), self.comparator, self.single_token, self.source, self.alternatives)


# -- algorithmic tasks (generated) -----------------------------------------------------------------


def _letters(shift: int) -> list[tuple[str, str]]:
    lower = string.ascii_lowercase
    return [(lower[i], lower[i + shift]) for i in range(26) if 0 <= i + shift < 26]


def _lists(pick: int, n: int = 1000, seed: int = 0) -> list[tuple[str, str]]:
    """n distinct comma-separated letter lists of length 2-4 (letters drawn with replacement), as in
    the paper's ListOperationTask; a fixed seed makes the finite pool the same everywhere."""
    rng = make_rng(seed, "algorithmic-lists")
    seen: dict[str, str] = {}
    while len(seen) < n:
        items = rng.choice(list(string.ascii_lowercase), size=int(rng.integers(2, 5)))
        seen.setdefault(",".join(items), str(items[pick]))
    return sorted(seen.items())


def _algorithmic() -> dict[str, Task]:
    gen = "generated"
    return {
        t.name: t
        for t in [
            Task("algorithmic_next_letter", "algorithmic", tuple(_letters(+1)), source=f"{gen}: a->b ... y->z"),
            Task("algorithmic_prev_letter", "algorithmic", tuple(_letters(-1)), source=f"{gen}: b->a ... z->y"),
            Task("algorithmic_list_first", "algorithmic", tuple(_lists(0)), source=f"{gen}: 1000 lists of 2-4 letters, seed 0"),
            Task("algorithmic_list_last", "algorithmic", tuple(_lists(-1)), source=f"{gen}: 1000 lists of 2-4 letters, seed 0"),
            Task("algorithmic_to_upper", "algorithmic", tuple((c, c.upper()) for c in string.ascii_lowercase), source=f"{gen}: a->A"),
            Task("algorithmic_to_lower", "algorithmic", tuple((c.upper(), c) for c in string.ascii_lowercase), source=f"{gen}: A->a"),
        ]
    }


# -- tasks from the shipped data -------------------------------------------------------------------

_SHIPPED = {
    # name: (category, comparator, single-token filter)
    "translation_fr_en": ("translation", "synonym", True),
    "translation_es_en": ("translation", "synonym", True),
    "translation_en_fr": ("translation", "synonym", True),
    "translation_en_es": ("translation", "synonym", True),
    "linguistic_present_simple_gerund": ("linguistic", "exact", True),
    "linguistic_present_simple_past_simple": ("linguistic", "exact", True),
    "linguistic_plural_singular": ("linguistic", "exact", True),
    "linguistic_antonyms": ("linguistic", "exact", True),
    "knowledge_country_capital": ("knowledge", "prefix", False),
    "knowledge_person_sport": ("knowledge", "prefix", False),
    "knowledge_location_continent": ("knowledge", "prefix", False),
    "knowledge_landmark_country": ("knowledge", "prefix", False),
}

# The paper's tasks whose data (CounterFact) is not available offline -> the task we run instead.
SUBSTITUTES = {
    "knowledge_person_language": "knowledge_person_sport",
    "knowledge_location_religion": "knowledge_landmark_country",
}

# The paper's 18 evaluated tasks, in its order, with the two substitutes in place.
PAPER_TASKS = (
    "algorithmic_next_letter", "algorithmic_prev_letter", "algorithmic_list_first", "algorithmic_list_last",
    "algorithmic_to_lower", "algorithmic_to_upper",
    "translation_fr_en", "translation_es_en", "translation_en_fr", "translation_en_es",
    "linguistic_present_simple_gerund", "linguistic_present_simple_past_simple", "linguistic_plural_singular",
    "linguistic_antonyms",
    "knowledge_country_capital", "knowledge_person_sport", "knowledge_location_continent",
    "knowledge_landmark_country",
)  # fmt: skip


def _read_shipped(name: str) -> dict[str, str]:
    text = resources.files("iclab.taskvectors").joinpath("data", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def _shipped(name: str) -> Task:
    category, comparator, single = _SHIPPED[name]
    mapping = _read_shipped(name)
    alternatives: dict[str, tuple[str, ...]] = {}
    if comparator == "synonym":  # every translation the source lists for a word counts as correct
        alt_name = f"{name}.alternatives"
        if resources.files("iclab.taskvectors").joinpath("data", f"{alt_name}.json").is_file():
            alternatives = {k: tuple(v) for k, v in _read_shipped(alt_name).items()}
    return Task(name, category, tuple(sorted(mapping.items())), comparator, single, f"data/{name}.json", alternatives)


@cache
def builtin_tasks() -> dict[str, Task]:
    tasks = _algorithmic()
    tasks.update({name: _shipped(name) for name in _SHIPPED})
    return {name: tasks[name] for name in PAPER_TASKS}


def task_names() -> list[str]:
    return list(builtin_tasks())


def get_task(name: str) -> Task:
    """A built-in task by name, or a task file (.json/.csv) by path."""
    tasks = builtin_tasks()
    if name in tasks:
        return tasks[name]
    if name in SUBSTITUTES:
        raise IclabError(
            f"task {name!r} needs CounterFact, which is not available offline; "
            f"use its documented substitute {SUBSTITUTES[name]!r}"
        )
    if name.endswith((".json", ".csv")):
        return load_task_file(name)
    close = [t for t in tasks if name.lower() in t]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise IclabError(f"unknown task {name!r}{hint}; run `iclab tasks` to list them, or pass a .json/.csv file of pairs")


def resolve_tasks(spec: str | list[str]) -> list[Task]:
    """'all', a category name, or comma-separated task names / file paths."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[Task] = []
    for raw in (n.strip() for n in names):
        if raw == "all":
            out.extend(builtin_tasks().values())
        elif raw in CATEGORIES:
            out.extend(t for t in builtin_tasks().values() if t.category == raw)
        elif raw:
            out.append(get_task(raw))
    if not out:
        raise IclabError("no tasks given; pass 'all', a category, or task names")
    return list({t.name: t for t in out}.values())


def load_task_file(path: str | Path, comparator: str = "exact", category: str = "user") -> Task:
    """A user task from a JSON file ({"in": "out", ...} or [{"input":..., "output":...}, ...]) or a
    CSV file with columns input,output. The task is named after the file."""
    path = Path(path)
    where = f"task file {str(path)!r}"
    if not path.is_file():
        raise IclabError(f"{where} does not exist; pass the path of a .json or .csv file of input->output pairs")
    try:
        text = path.read_text(encoding="utf-8-sig")  # also accepts the byte-order mark spreadsheets write
    except UnicodeDecodeError:
        raise IclabError(f"{where} is not UTF-8 text; save it as UTF-8") from None
    if path.suffix == ".json":
        def no_repeats(items: list[tuple[str, object]]) -> dict:
            keys = [k for k, _ in items]
            if len(set(keys)) != len(keys):
                raise IclabError(f"{where}: an input appears twice; each input must have one output")
            return dict(items)

        try:
            data = json.loads(text, object_pairs_hook=no_repeats)
        except json.JSONDecodeError as e:
            raise IclabError(f"{where}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if isinstance(data, dict):
            pairs = list(data.items())
        elif isinstance(data, list) and all(isinstance(d, dict) and {"input", "output"} <= d.keys() for d in data):
            pairs = [(d["input"], d["output"]) for d in data]
        else:
            raise IclabError(f"{where}: expected an object {{input: output}} or a list of {{\"input\", \"output\"}} objects")
    elif path.suffix == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r]  # blank lines are not pairs
        if not rows or [c.strip().lower() for c in rows[0][:2]] != ["input", "output"]:
            raise IclabError(f"{where}: the first line must be the header 'input,output'")
        bad = [i + 2 for i, r in enumerate(rows[1:]) if len(r) != 2]
        if bad:
            raise IclabError(f"{where}: line {bad[0]} does not have exactly two columns (input,output)")
        pairs = [(r[0], r[1]) for r in rows[1:]]
    else:
        raise IclabError(f"{where}: unsupported extension {path.suffix!r}; use .json or .csv")
    for i, (x, y) in enumerate(pairs):
        if not isinstance(x, str) or not isinstance(y, str) or not x.strip() or not y.strip():
            raise IclabError(f"{where}: pair {i + 1} ({x!r} -> {y!r}) must be two non-empty strings")
        if "\n" in x + y:
            raise IclabError(f"{where}: pair {i + 1} contains a newline, which would break the prompt format")
    pairs = [(x.strip(), y.strip()) for x, y in pairs]
    if len(pairs) < 2:
        raise IclabError(f"{where}: needs at least 2 input->output pairs, has {len(pairs)}")
    if len({x for x, _ in pairs}) != len(pairs):
        raise IclabError(f"{where}: an input appears twice; each input must have one output")
    return Task(path.stem, category, tuple(pairs), comparator, source=str(path))


__all__ = ["CATEGORIES", "PAPER_TASKS", "SUBSTITUTES", "Task", "get_task", "load_task_file", "resolve_tasks", "task_names"]
