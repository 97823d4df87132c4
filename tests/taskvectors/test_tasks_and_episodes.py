"""The task library, task files, prompt templates, the single-token filter, episodes and scoring."""

import json
import string

import numpy as np
import pytest

from iclab.runtime._errors import IclabError
from iclab.taskvectors._episodes import sample_episodes, split_queries
from iclab.taskvectors._prompts import TEMPLATES, get_template, prepare_task, single_token_mask
from iclab.taskvectors._scoring import clean_prediction, is_correct
from iclab.taskvectors._tasks import (
    CATEGORIES,
    PAPER_TASKS,
    SUBSTITUTES,
    Task,
    builtin_tasks,
    get_task,
    load_task_file,
    resolve_tasks,
    task_names,
)

from ..models.tiny import tiny_tokenizer

# -- the paper's 18 tasks -----------------------------------------------------------------------


def test_the_eighteen_paper_tasks():
    assert task_names() == list(PAPER_TASKS)
    assert len(PAPER_TASKS) == 18 == len(set(PAPER_TASKS))
    tasks = builtin_tasks()
    counts = {c: sum(t.category == c for t in tasks.values()) for c in CATEGORIES}
    assert counts == {"algorithmic": 6, "translation": 4, "linguistic": 4, "knowledge": 4}
    for name, task in tasks.items():
        assert task.name == name and name.startswith(task.category + "_")
        assert len(task.pairs) >= 20, name
        assert len({x for x, _ in task.pairs}) == len(task.pairs), name  # one output per input
        assert all(x and y for x, y in task.pairs), name
        assert task.source
    assert not set(SUBSTITUTES) & set(PAPER_TASKS) and set(SUBSTITUTES.values()) <= set(PAPER_TASKS)


def test_algorithmic_tasks_are_correct():
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    nxt = get_task("algorithmic_next_letter").answers
    assert nxt["a"] == "b" and nxt["y"] == "z" and "z" not in nxt and len(nxt) == 25
    prv = get_task("algorithmic_prev_letter").answers
    assert prv["b"] == "a" and prv["z"] == "y" and "a" not in prv and len(prv) == 25
    assert get_task("algorithmic_to_upper").answers == dict(zip(lower, upper))
    assert get_task("algorithmic_to_lower").answers == dict(zip(upper, lower))
    first, last = get_task("algorithmic_list_first"), get_task("algorithmic_list_last")
    assert [x for x, _ in first.pairs] == [x for x, _ in last.pairs]  # the same lists
    assert len(first.pairs) == 1000
    for task, pick in ((first, 0), (last, -1)):
        for x, y in task.pairs:
            items = x.split(",")
            assert 2 <= len(items) <= 4 and all(len(i) == 1 and i in lower for i in items), x
            assert y == items[pick]
    lengths = {len(x.split(",")) for x, _ in first.pairs}
    assert lengths == {2, 3, 4}


def test_shipped_task_comparators():
    tasks = builtin_tasks()
    assert {tasks[n].comparator for n in PAPER_TASKS if n.startswith("translation")} == {"synonym"}
    assert {tasks[n].comparator for n in PAPER_TASKS if n.startswith("knowledge")} == {"prefix"}
    assert all(tasks[n].single_token for n in PAPER_TASKS if n.startswith(("translation", "linguistic")))


def test_substitute_and_unknown_task_errors():
    with pytest.raises(IclabError, match="knowledge_person_sport") as e:
        get_task("knowledge_person_language")
    assert "CounterFact" in str(e.value)
    with pytest.raises(IclabError, match="knowledge_landmark_country"):
        get_task("knowledge_location_religion")
    with pytest.raises(IclabError, match="unknown task") as e:
        get_task("no_such_task")
    assert "\n" not in str(e.value)
    with pytest.raises(IclabError, match="did you mean") as e:
        get_task("capital")
    assert "knowledge_country_capital" in str(e.value) and "\n" not in str(e.value)


def test_resolve_tasks():
    assert [t.name for t in resolve_tasks("all")] == list(PAPER_TASKS)
    assert len(resolve_tasks(["all"])) == 18
    algo = resolve_tasks("algorithmic")
    assert len(algo) == 6 and all(t.category == "algorithmic" for t in algo)
    assert len(resolve_tasks("translation")) == 4
    both = resolve_tasks("algorithmic_to_upper, translation_en_fr,algorithmic_to_upper")  # deduplicated
    assert [t.name for t in both] == ["algorithmic_to_upper", "translation_en_fr"]
    assert len(resolve_tasks("algorithmic,all")) == 18
    with pytest.raises(IclabError, match="no tasks"):
        resolve_tasks(" , ")
    with pytest.raises(IclabError):
        resolve_tasks("algorithmic,bogus")


def test_task_validation():
    with pytest.raises(IclabError, match="comparator"):
        Task("t", "user", (("a", "b"), ("c", "d")), comparator="fuzzy")
    with pytest.raises(IclabError, match="at least 2"):
        Task("t", "user", (("a", "b"),))


# -- task files ---------------------------------------------------------------------------------


def test_load_json_dict(tmp_path):
    path = tmp_path / "caps.json"
    path.write_text(json.dumps({"France": "Paris", " Spain ": "Madrid", "Peru": "Lima"}), encoding="utf-8")
    task = load_task_file(path)
    assert task.name == "caps" and task.category == "user" and task.comparator == "exact"
    assert task.pairs == (("France", "Paris"), ("Spain", "Madrid"), ("Peru", "Lima"))  # stripped, in order
    assert task.source == str(path)
    assert load_task_file(path, comparator="prefix").comparator == "prefix"
    assert get_task(str(path)).pairs == task.pairs  # a path works wherever a task name does


def test_load_json_list(tmp_path):
    path = tmp_path / "pairs.json"
    rows = [{"input": "a", "output": "b", "note": "extra keys are fine"}, {"input": "c", "output": "d"}]
    path.write_text(json.dumps(rows), encoding="utf-8")
    assert load_task_file(path).pairs == (("a", "b"), ("c", "d"))


def test_load_csv(tmp_path):
    path = tmp_path / "words.csv"
    path.write_text('input,output\ncat,chat\n"a, b",x\nété,summer\n', encoding="utf-8")
    task = load_task_file(path)
    assert task.name == "words"
    assert task.pairs == (("cat", "chat"), ("a, b", "x"), ("été", "summer"))
    path.write_text("Input , Output\ncat,chat\ndog,chien\n", encoding="utf-8")  # header case/space tolerant
    assert len(load_task_file(path).pairs) == 2


BAD_FILES = {
    "bad_json": ("t.json", '{"a": "b",'),
    "json_wrong_structure": ("t.json", '["a", "b"]'),
    "json_list_missing_key": ("t.json", '[{"input": "a"}, {"input": "c", "output": "d"}]'),
    "json_scalar": ("t.json", "3"),
    "json_non_string_output": ("t.json", '{"a": 1, "c": "d"}'),
    "csv_no_header": ("t.csv", "cat,chat\ndog,chien\n"),
    "csv_three_columns": ("t.csv", "input,output\ncat,chat\ndog,chien,perro\n"),
    "csv_empty_output": ("t.csv", "input,output\ncat,chat\ndog,\n"),
    "csv_blank_input": ("t.csv", "input,output\ncat,chat\n  ,chien\n"),
    "csv_duplicate_input": ("t.csv", "input,output\ncat,chat\ndog,chien\ncat,gato\n"),
    "json_duplicate_after_strip": ("t.json", '[{"input": "cat", "output": "a"}, {"input": "cat ", "output": "b"}]'),
    "json_newline": ("t.json", '{"a\\nb": "c", "d": "e"}'),
    "csv_empty": ("t.csv", ""),
    "txt_extension": ("t.txt", "input,output\ncat,chat\ndog,chien\n"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_malformed_task_files(tmp_path, case):
    name, text = BAD_FILES[case]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IclabError) as e:
        load_task_file(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg, msg  # names the file


@pytest.mark.parametrize(("name", "text"), [("one_pair.json", '{"a": "b"}'), ("no_rows.csv", "input,output\n")])
def test_task_file_with_too_few_pairs(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IclabError, match="at least 2") as e:
        load_task_file(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_and_non_utf8_task_files(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(IclabError, match="does not exist") as e:
        load_task_file(missing)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("input,output\ncafé,coffee\nthé,tea\n".encode("latin-1"))
    with pytest.raises(IclabError, match="UTF-8") as e:
        load_task_file(latin)
    assert str(latin) in str(e.value) and "\n" not in str(e.value)


# -- templates ----------------------------------------------------------------------------------


def test_templates():
    demos = [("a", "b"), ("c", "d")]
    paper = get_template("paper")
    assert paper.prompt(demos, "e") == "example:a->b\nexample:c->d\nexample:e->"
    assert paper.query("e") == "example:e->" and paper.prompt([], "e") == "example:e->"
    assert paper.answer_space == ""
    # the space before the answer is left out of the query: it belongs to the answer's first token
    assert get_template("arrow").prompt(demos, "e") == "a -> b\nc -> d\ne ->"
    assert get_template("qa").prompt(demos, "e") == "Q: a\nA: b\n\nQ: c\nA: d\n\nQ: e\nA:"
    assert get_template("arrow").answer_space == " " and get_template("qa").answer_space == " "
    assert set(TEMPLATES) == {"paper", "arrow", "qa"}
    with pytest.raises(IclabError, match="unknown template") as e:
        get_template("chat")
    assert "paper" in str(e.value)


# -- the single-token filter --------------------------------------------------------------------


def test_single_token_mask_with_char_tokenizer():
    tok = tiny_tokenizer()
    pairs = [("a", "b"), ("hello", "x"), ("a", "bc"), ("cat", "chat"), ("é", "è")]
    assert single_token_mask(tok, get_template("paper"), pairs) == [True, True, False, False, True]
    for name in ("arrow", "qa"):  # " b" is two characters, so two tokens for a character tokenizer
        assert single_token_mask(tok, get_template(name), pairs) == [False] * 5, name


def test_prepare_task_filters_multi_char_outputs():
    tok = tiny_tokenizer()
    paper = get_template("paper")
    single = [(c, c.upper()) for c in "abcdefghijkl"]
    multi = [("x", "xx"), ("y", "yes"), ("z", "zed")]
    task = Task("mixed", "user", tuple(single + multi), single_token=True)
    prepared = prepare_task(task, tok, paper)
    # " a" -> " A" is two characters, so the leading-space variant keeps nothing and is not used
    assert not prepared.leading_space
    assert prepared.pairs == tuple(single) and prepared.originals == tuple(x for x, _ in single)
    assert prepared.n_before_filter == 15 and prepared.task is task
    # Without single_token, nothing is filtered and the tokenizer is not consulted.
    loose = prepare_task(Task("mixed", "user", tuple(single + multi)), None, paper)
    assert len(loose.pairs) == 15 and loose.n_before_filter == 15
    # Too few single-token pairs left.
    few = Task("few", "user", tuple(single[:3] + multi), single_token=True)
    with pytest.raises(IclabError, match="only 3 of 6") as e:
        prepare_task(few, tok, paper)
    assert "\n" not in str(e.value) and "few" in str(e.value)
    assert len(prepare_task(few, tok, paper, min_pairs=3).pairs) == 3


# -- episodes -----------------------------------------------------------------------------------


def _prepared(n: int = 30):
    pairs = tuple((f"in{i}", f"out{i}") for i in range(n))
    return prepare_task(Task("toy", "user", pairs), None, get_template("paper"))


@pytest.mark.parametrize("n", [2, 7, 30])
def test_split_queries(n):
    dev, test = split_queries(n, np.random.default_rng(0))
    assert set(dev).isdisjoint(set(test))
    assert sorted([*dev, *test]) == list(range(n))
    assert len(dev) == n // 2 and len(test) == n - n // 2
    assert list(dev) == sorted(dev) and list(test) == sorted(test)


def test_sample_episodes_invariants():
    prepared = _prepared()
    rng = np.random.default_rng(1)
    dev, test = split_queries(len(prepared.pairs), rng)
    inputs = [x for x, _ in prepared.pairs]
    answers = dict(prepared.pairs)
    k, m = 5, 3
    episodes = sample_episodes(prepared, test, 40, k, m, rng)  # more episodes than queries in the pool
    assert len(episodes) == 40
    for e in episodes:
        assert e.item in test and e.query == inputs[e.item] and e.answer == answers[e.query]
        demo_inputs = [x for x, _ in e.demos]
        assert len(e.demos) == k and len(set(demo_inputs)) == k
        assert all(answers[x] == y for x, y in e.demos)
        assert e.query not in demo_inputs
        assert len(e.dummies) == m and len(set(e.dummies)) == m
        assert e.query not in e.dummies and not set(e.dummies) & set(demo_inputs)
        assert set(e.to_json()) == {"demos", "query", "answer", "dummies", "item"}
    # Queries without replacement while the pool lasts: the first len(pool) cover it exactly once.
    assert sorted(e.item for e in episodes[: len(test)]) == sorted(test)


def test_sample_episodes_is_seeded():
    prepared = _prepared()
    pool = np.arange(10)
    a = sample_episodes(prepared, pool, 8, 4, 2, np.random.default_rng(5))
    b = sample_episodes(prepared, pool, 8, 4, 2, np.random.default_rng(5))
    c = sample_episodes(prepared, pool, 8, 4, 2, np.random.default_rng(6))
    assert a == b and a != c


def test_sample_episodes_needs_enough_pairs():
    prepared = _prepared(6)
    with pytest.raises(IclabError, match="needs k \\+ 1 \\+ n_dummy = 7; add pairs to the task or lower --k"):
        sample_episodes(prepared, np.arange(3), 2, k=5, n_dummy=1, rng=np.random.default_rng(0))
    zero_shot = sample_episodes(prepared, np.arange(3), 3, k=0, n_dummy=0, rng=np.random.default_rng(0))
    assert all(e.demos == () and e.dummies == () for e in zero_shot)


# -- scoring ------------------------------------------------------------------------------------


def _scored(comparator, pairs, alternatives=None, leading_space=False):
    task = Task("s", "user", tuple(pairs), comparator=comparator, alternatives=alternatives or {})
    prepared = prepare_task(task, None, get_template("paper"))
    if leading_space:  # as prepare_task writes a task when it uses the leading-space variant
        from dataclasses import replace

        prepared = replace(prepared, pairs=tuple((" " + x, " " + y) for x, y in pairs), leading_space=True)
    return prepared


def test_clean_prediction():
    assert clean_prediction(" Paris\nexample") == "Paris"
    assert clean_prediction("\nParis") == ""


def test_exact_comparator():
    p = _scored("exact", [("a", "b"), ("c", "d")])
    assert is_correct("b", p, 0) and is_correct(" b", p, 0) and is_correct("b\nexample", p, 0)
    assert not is_correct("B", p, 0) and not is_correct("d", p, 0) and not is_correct("", p, 0)
    spaced = _scored("exact", [("a", "b"), ("c", "d")], leading_space=True)
    assert is_correct(" d", spaced, 1)


def test_prefix_comparator():
    p = _scored("prefix", [("France", "Paris"), ("UK", "London")])
    assert is_correct("Par", p, 0) and is_correct(" P", p, 0) and is_correct("Paris", p, 0)
    assert is_correct("Paris, France", p, 0)  # the gold is a prefix of the prediction
    assert not is_correct("", p, 0) and not is_correct(" \n", p, 0)
    assert not is_correct("Lon", p, 0) and is_correct("Lon", p, 1)
    assert not is_correct("par", p, 0)


def test_synonym_comparator():
    alts = {"chien": ("dog", "hound"), "chat": ("cat",)}
    p = _scored("synonym", [("chien", "dog"), ("chat", "cat")], alternatives=alts)
    assert is_correct("dog", p, 0) and is_correct("hound", p, 0) and is_correct(" hound\n", p, 0)
    assert not is_correct("cat", p, 0) and not is_correct("do", p, 0) and not is_correct("", p, 0)
    assert is_correct("cat", p, 1) and not is_correct("dog", p, 1)
    # Alternatives are looked up by the task's own input, also when the prompt carries a leading space.
    spaced = _scored("synonym", [("chien", "dog"), ("chat", "cat")], alternatives=alts, leading_space=True)
    assert is_correct("hound", spaced, 0)
    # Without listed alternatives, the gold output is the only answer.
    bare = _scored("synonym", [("chien", "dog"), ("chat", "cat")])
    assert is_correct("dog", bare, 0) and not is_correct("hound", bare, 0)
