"""Prompt templates and the single-token filter, which depends on the template and the tokenizer.

The paper's format is `example:{x}->{y}`, demonstrations joined by newlines, and the query line
ends right after the arrow, so the model's next token is the answer's first token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from iclab.runtime import IclabError

from ._tasks import Task


@dataclass(frozen=True)
class Template:
    """How one demonstration is written ({x}: input, {y}: output) and what separates demonstrations."""

    name: str
    demo: str = "example:{x}->{y}"
    sep: str = "\n"

    def __post_init__(self) -> None:
        if "{x}" not in self.demo or not self.demo.endswith("{y}"):
            raise IclabError(f"template {self.name!r}: demo must contain {{x}} and end with {{y}}, got {self.demo!r}")

    def query(self, x: str) -> str:
        """The query line, ending where the answer would start. A space before {y} is left out
        (and belongs to the answer's first token, " Paris"), as tokenizers attach it to the next word."""
        return self.demo[: -len("{y}")].rstrip(" ").replace("{x}", x)

    def prompt(self, demos: list[tuple[str, str]], x: str) -> str:
        lines = [self.demo.replace("{x}", a).replace("{y}", b) for a, b in demos]
        return self.sep.join([*lines, self.query(x)])

    @property
    def answer_space(self) -> str:
        """The space the template puts before the answer ("" for the paper's `->{y}`)."""
        head = self.demo[: -len("{y}")]
        return head[len(head.rstrip(" ")) :]


TEMPLATES = {
    t.name: t
    for t in [
        Template("paper", "example:{x}->{y}", "\n"),  # Hendel et al.'s format
        Template("arrow", "{x} -> {y}", "\n"),  # spaced arrow
        Template("qa", "Q: {x}\nA: {y}", "\n\n"),  # the Function Vectors paper's format
    ]
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise IclabError(f"unknown template {name!r}; choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


@dataclass(frozen=True)
class PreparedTask:
    """A task's pairs as they are written into prompts for one tokenizer and template."""

    task: Task
    pairs: tuple[tuple[str, str], ...]  # (x as written, y as written); may carry a leading space
    originals: tuple[str, ...]  # the task's own input for each pair (for scoring)
    leading_space: bool  # pairs written as " x" -> " y" (the paper's variant for templates like `->{y}`)
    n_before_filter: int
    scoring: str = "first-token"  # first-token (the paper's) | full (the whole answer)
    max_answer_tokens: int = 1  # the longest gold answer in tokens after its query line
    n_multi_token: int = 0  # pairs whose answer is more than one token for this tokenizer

    @property
    def max_new_tokens(self) -> int:
        """How many tokens to generate: 1 under first-token; the longest answer plus its line end under full."""
        return 1 if self.scoring == "first-token" else self.max_answer_tokens + 1


def answer_lengths(tokenizer, template: Template, pairs: list[tuple[str, str]]) -> list[int]:
    """Tokens y takes after the query line of x; 0 where writing y changes the query's own tokens
    (the answer would not start at a token boundary)."""
    prefixes = [template.query(x) for x, _ in pairs]
    fulls = [p + template.answer_space + y for p, (_, y) in zip(prefixes, pairs)]
    enc_p = tokenizer(prefixes, add_special_tokens=False)["input_ids"]
    enc_f = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    return [len(f) - len(p) if f[: len(p)] == p else 0 for p, f in zip(enc_p, enc_f)]


def single_token_mask(tokenizer, template: Template, pairs: list[tuple[str, str]]) -> list[bool]:
    """True where y, written after the query line of x, is exactly one token and leaves the query's
    tokens unchanged, so the model's first predicted token can be the whole answer."""
    return [n == 1 for n in answer_lengths(tokenizer, template, pairs)]


def prepare_task(task: Task, tokenizer, template: Template, min_pairs: int = 10, scoring: str = "first-token",
                 warn: Callable[[str], None] | None = None) -> PreparedTask:
    """Write the task's pairs for this tokenizer and template; under `first-token` scoring apply the
    paper's single-token filter where the task asks for it.

    As in the paper's code, a leading-space version (" x" -> " y") is tried when the answer does
    not already follow a space, and is used if it keeps at least 70% as many pairs as the plain one.
    Under `first-token`, a task whose answers are several tokens and whose comparator cannot credit a
    first token gets a one-line warning through `warn`: those answers can never be scored correct.
    """
    plain = list(task.pairs)
    if scoring not in ("first-token", "full"):
        raise IclabError(f"scoring {scoring!r} is not known; use first-token or full")
    if not task.single_token or scoring == "full":
        return _unfiltered(task, tokenizer, template, scoring, warn)
    use_space, keep = _writing(tokenizer, template, plain)  # a leading space? (the template may add its own)
    written = [(" " + x, " " + y) if use_space else (x, y) for x, y in plain]
    pairs = tuple(p for p, k in zip(written, keep) if k)
    originals = tuple(x for (x, _), k in zip(plain, keep) if k)
    if len(pairs) < min_pairs:
        raise IclabError(
            f"task {task.name!r}: only {len(pairs)} of {len(plain)} pairs have single-token answers for this "
            f"tokenizer and template {template.name!r}; need at least {min_pairs}"
        )
    return PreparedTask(task, pairs, originals, use_space, len(plain), scoring)


def _writing(tokenizer, template: Template, plain: list[tuple[str, str]]) -> tuple[bool, list[bool]]:
    """The paper's code's choice of writing: (leading space?, which pairs then have one-token answers). A
    template with no space before the answer gets " x" -> " y" unless that keeps under 70% as many
    one-token answers as the plain writing."""
    keep_plain = single_token_mask(tokenizer, template, plain)
    if template.answer_space:
        return False, keep_plain
    keep_spaced = single_token_mask(tokenizer, template, [(" " + x, " " + y) for x, y in plain])
    return (True, keep_spaced) if sum(keep_spaced) >= 0.7 * sum(keep_plain) else (False, keep_plain)


def _unfiltered(task: Task, tokenizer, template: Template, scoring: str, warn: Callable[[str], None] | None) -> PreparedTask:
    """Every pair; under `full` scoring written plain or with a leading space (" x" -> " y") as the paper's
    code chooses for a template with no space before the answer (spaced, unless that leaves under 70% as
    many one-token answers); with the answer lengths for the decoding bound and the warning."""
    plain = list(task.pairs)
    use_space = False
    # Under full scoring, the paper's choice of writing (without its filter); first-token scoring of an
    # unfiltered task (the knowledge tasks, task files) keeps the plain writing it always had.
    if scoring == "full" and tokenizer is not None:
        use_space = _writing(tokenizer, template, plain)[0]
    written = [(" " + x, " " + y) if use_space else (x, y) for x, y in plain]
    if tokenizer is None:  # pairs only (tests): lengths not measured
        return PreparedTask(task, tuple(written), tuple(x for x, _ in plain), use_space, len(plain), scoring)
    lengths = answer_lengths(tokenizer, template, written)
    n_multi = sum(n != 1 for n in lengths)
    if scoring == "first-token" and n_multi and task.comparator != "prefix" and warn is not None:
        warn(f"task {task.name!r}: {n_multi} of {len(plain)} answers are more than one token for this tokenizer and "
             "can never be correct under scoring=first-token; pass --scoring full to score whole answers")
    alone = tokenizer([template.answer_space + y for _, y in written], add_special_tokens=False)["input_ids"]
    bound = max(max(lengths), max(len(a) for a in alone), 1)  # in context, or alone where that splits differently
    return PreparedTask(task, tuple(written), tuple(x for x, _ in plain), use_space, len(plain), scoring, bound, n_multi)
