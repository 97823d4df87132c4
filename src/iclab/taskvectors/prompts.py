"""Prompt templates and the single-token filter, which depends on the template and the tokenizer.

The paper's format is `example:{x}->{y}`, demonstrations joined by newlines, and the query line
ends right after the arrow, so the model's next token is the answer's first token.
"""

from __future__ import annotations

from dataclasses import dataclass

from iclab.runtime.errors import IclabError

from .tasks import Task


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


def single_token_mask(tokenizer, template: Template, pairs: list[tuple[str, str]]) -> list[bool]:
    """True where y, written after the query line of x, is exactly one token and leaves the query's
    tokens unchanged, so the model's first predicted token can be the whole answer."""
    prefixes = [template.query(x) for x, _ in pairs]
    fulls = [p + template.answer_space + y for p, (_, y) in zip(prefixes, pairs)]
    enc_p = tokenizer(prefixes, add_special_tokens=False)["input_ids"]
    enc_f = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    return [len(f) == len(p) + 1 and f[: len(p)] == p for p, f in zip(enc_p, enc_f)]


def prepare_task(task: Task, tokenizer, template: Template, min_pairs: int = 10) -> PreparedTask:
    """Apply the paper's single-token filter where the task asks for it.

    As in the paper's code, a leading-space version (" x" -> " y") is tried when the answer does
    not already follow a space, and is used if it keeps at least 70% as many pairs as the plain one.
    """
    plain = list(task.pairs)
    if not task.single_token:
        return PreparedTask(task, tuple(plain), tuple(x for x, _ in plain), False, len(plain))
    keep_plain = single_token_mask(tokenizer, template, plain)
    use_space = False  # whether the pairs are written with a leading space (the template may add its own)
    keep = keep_plain
    if not template.answer_space:
        spaced = [(" " + x, " " + y) for x, y in plain]
        keep_spaced = single_token_mask(tokenizer, template, spaced)
        if sum(keep_spaced) >= 0.7 * sum(keep_plain):
            use_space, keep = True, keep_spaced
    written = [(" " + x, " " + y) if use_space else (x, y) for x, y in plain]
    pairs = tuple(p for p, k in zip(written, keep) if k)
    originals = tuple(x for (x, _), k in zip(plain, keep) if k)
    if len(pairs) < min_pairs:
        raise IclabError(
            f"task {task.name!r}: only {len(pairs)} of {len(plain)} pairs have single-token answers for this "
            f"tokenizer and template {template.name!r}; need at least {min_pairs}"
        )
    return PreparedTask(task, pairs, originals, use_space, len(plain))
