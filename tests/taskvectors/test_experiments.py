"""The task-vector experiments: registration, presets, config validation and their pure helpers.
No real model is loaded here (the integration test runs the quick presets)."""

from __future__ import annotations

import numpy as np
import pytest

from iclab.runtime import IclabError, get_experiment
from iclab.taskvectors.experiments.conflict import PAPER_CONFLICT, conflict_episodes, parse_pairs
from iclab.taskvectors.experiments.tsne import cluster_stats, cosine_distances
from iclab.taskvectors.experiments.vocab import hit_rate, top_tokens
from iclab.taskvectors._prompts import PreparedTask
from iclab.taskvectors._scoring import is_correct
from iclab.taskvectors._tasks import PAPER_TASKS, Task

# experiment -> (a bad override, the field its one-line error must name)
BAD_VALUES = {
    "taskvectors.main": ({"k": 0}, "k"),
    "taskvectors.conflict": ({"pairs": "algorithmic_to_upper:no_such_task"}, "pairs"),
    "taskvectors.vocab": ({"top": 0}, "top"),
    "taskvectors.tsne": ({"perplexity": 0}, "perplexity"),
    "taskvectors.templates": ({"templates": "paper,nope"}, "templates"),
    "taskvectors.function_vectors": ({"n_corrupt": 1}, "n_corrupt"),
    "taskvectors.profile": ({"n_top_heads": 0}, "n_top_heads"),
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_registered_with_quick_and_paper_presets(name):
    exp = get_experiment(name)
    assert {"quick", "paper"} <= set(exp.presets)
    assert exp.title and exp.paper and exp.description
    for preset in ("quick", "paper"):
        cfg = exp.make_config(preset)
        assert cfg.model == "smollm2-135m"
    assert exp.make_config("quick").hash() != exp.make_config("paper").hash()


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_config_rejects_a_bad_value_in_one_line(name):
    overrides, field = BAD_VALUES[name]
    with pytest.raises(IclabError, match=f"field '{field}'") as err:
        get_experiment(name).make_config("quick", overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "overrides", "field"),
    [
        ("taskvectors.conflict", {"pairs": "algorithmic_to_upper"}, "pairs"),  # no A:B
        ("taskvectors.conflict", {"pairs": "algorithmic_to_upper:algorithmic_to_upper"}, "pairs"),
        ("taskvectors.conflict", {"tasks": "algorithmic"}, "tasks"),  # tasks come from pairs
        ("taskvectors.templates", {"template": "arrow"}, "template"),  # templates come from `templates`
        ("taskvectors.templates", {"templates": "paper,paper"}, "templates"),
        ("taskvectors.tsne", {"layer": -1}, "layer"),
        ("taskvectors.vocab", {"layer_offset": -1}, "layer_offset"),
        ("taskvectors.main", {"template": "nope"}, "template"),
        ("taskvectors.main", {"episode_seeds": 0}, "episode_seeds"),
        ("taskvectors.vocab", {"template": "nope"}, "template"),
    ],
)
def test_more_bad_values(name, overrides, field):
    exp = get_experiment(name)
    with pytest.raises(IclabError, match=f"field '{field}'"):
        exp.make_config("quick", overrides)


def test_paper_presets_use_the_papers_sizes():
    for name in ("taskvectors.main", "taskvectors.conflict", "taskvectors.vocab", "taskvectors.templates"):
        exp = get_experiment(name)  # one episode draw is a hint: the paper presets pool three
        assert exp.make_config("paper").episode_seeds == 3 and exp.make_config("quick").episode_seeds == 1
    assert get_experiment("taskvectors.conflict").make_config("paper").k == 4
    assert get_experiment("taskvectors.conflict").make_config("paper").n_test == 100
    assert get_experiment("taskvectors.tsne").make_config("paper").k == 4
    assert get_experiment("taskvectors.tsne").make_config("paper").n_test == 50
    assert get_experiment("taskvectors.vocab").make_config("paper").top == 20
    tm = get_experiment("taskvectors.templates").make_config("paper")
    assert (tm.tasks, tm.n_dev, tm.n_test, tm.n_baseline) == ("all", 50, 50, 100)
    assert tm.template_names == ["paper", "arrow", "qa"]
    fv = get_experiment("taskvectors.function_vectors").make_config("paper")  # Todd et al.'s sizes
    assert (fv.k, fv.n_clean, fv.n_corrupt, fv.n_top_heads, fv.template) == (10, 100, 25, 10, "qa")
    assert len(fv.tasks.split(",")) == 6


# -- conflict ------------------------------------------------------------------------------------


def test_parse_pairs():
    assert parse_pairs("all") == list(PAPER_CONFLICT)
    assert len(PAPER_CONFLICT) == 5 and all(a in PAPER_TASKS and b in PAPER_TASKS for a, b in PAPER_CONFLICT)
    assert parse_pairs(" algorithmic_list_last : algorithmic_list_first ") == [
        ("algorithmic_list_last", "algorithmic_list_first")
    ]
    with pytest.raises(ValueError, match="unknown task"):
        parse_pairs("algorithmic_list_last:nope")


def _prepared(name: str, pairs: list[tuple[str, str]], space: bool = False) -> PreparedTask:
    task = Task(name, "algorithmic", tuple(pairs))
    written = tuple((" " + x, " " + y) if space else (x, y) for x, y in pairs)
    return PreparedTask(task, written, tuple(x for x, _ in pairs), space, len(pairs))


def test_conflict_episodes_share_a_query_valid_for_both_tasks():
    letters = "abcdefghijklmnopqrstuvwxyz"
    A = _prepared("next", [(letters[i], letters[i + 1]) for i in range(25)], space=True)  # a..y, written " a"
    B = _prepared("upper", [(c, c.upper()) for c in letters[3:]] + [("zz", "Z")])
    b_test = np.arange(len(B.pairs))
    rng = np.random.default_rng(0)
    eps, n_queries, n_ambiguous = conflict_episodes(A, B, b_test, 40, 4, 2, rng)
    assert len(eps) == 40 and n_queries == len("defghijklmnopqrstuvwxy") and n_ambiguous == 0
    for ea, eb in eps:
        x = ea.query.strip()
        assert ea.query == " " + x  # written as task A writes it
        assert A.originals[ea.item] == x and B.originals[eb.item] == x
        assert eb.query == x and is_correct(" " + x.upper(), B, eb.item) and is_correct(ea.answer, A, ea.item)
        assert len(ea.demos) == 4 and all(d[0].strip() != x for d in ea.demos) and not ea.dummies
        assert len(eb.demos) == 4 and len(eb.dummies) == 2
        assert x not in eb.dummies and not set(eb.dummies) & {d[0] for d in eb.demos}
    # only B's test half is used for queries
    half = np.arange(5)
    eps, n_queries, _ = conflict_episodes(A, B, half, 10, 4, 2, np.random.default_rng(1))
    assert {eb.item for _, eb in eps} <= set(half.tolist()) and n_queries == 5


def test_conflict_episodes_leave_out_interchangeable_answers():
    A = _prepared("last", [("a,b", "b"), ("a,a", "a"), ("c,d", "d"), ("e,f", "f"), ("g,h", "h"), ("i,j", "j"),
                           ("k,l", "l"), ("m,n", "n")])  # fmt: skip
    B = _prepared("first", [(x, x[0]) for x, _ in A.task.pairs])
    eps, n_queries, n_ambiguous = conflict_episodes(A, B, np.arange(len(B.pairs)), 20, 3, 1, np.random.default_rng(0))
    assert n_ambiguous == 1 and n_queries == 7 and all(ea.query != "a,a" for ea, _ in eps)
    with pytest.raises(IclabError, match="share no usable query"):
        conflict_episodes(A, B, np.array([1]), 5, 3, 1, np.random.default_rng(0))


# -- vocab ---------------------------------------------------------------------------------------


class _Tok:
    vocab = [" Paris", "paris", " ,", "123", " capital", " Madrid", "the", " PARIS", "ing"]

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)


def test_top_tokens_keeps_alphabetic_case_insensitively_distinct_tokens():
    import torch

    logits = torch.tensor([9.0, 8.0, 7.5, 7.0, 6.0, 5.0, 4.0, 8.5, 1.0])
    assert top_tokens(logits, _Tok(), top=3, candidates=9) == ["Paris", "capital", "Madrid"]
    assert top_tokens(logits, _Tok(), top=20, candidates=4) == ["Paris"]  # only the first 4 scanned
    assert hit_rate(["Paris", "capital", "Madrid", "the"], {"paris", "madrid"}) == 0.5
    assert np.isnan(hit_rate([], {"paris"}))


# -- tsne ----------------------------------------------------------------------------------------


def test_cluster_stats_on_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16) * 10
    X = np.concatenate([c + rng.normal(size=(5, 16)) * 0.1 for c in centres])
    labels = np.repeat(["a", "b", "c"], 5)
    D = cosine_distances(X)
    assert D.shape == (15, 15) and np.allclose(np.diag(D), 0, atol=1e-12) and (D >= 0).all()
    stats, nn = cluster_stats(D, labels)
    assert nn == 1.0 and list(stats["task"]) == ["a", "b", "c"] and (stats["n"] == 5).all()
    assert (stats["within"] < stats["between"]).all() and (stats["nn_accuracy"] == 1.0).all()
    # shuffled labels: no structure left for the nearest neighbour to find
    stats, nn = cluster_stats(D, rng.permutation(labels))
    assert nn < 1.0
