"""The README's examples run as written."""

import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_library_example_runs():
    code = re.search(r"## Using the library.*?```python\n(.*?)```", README, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["W_ridge"].shape == (441,) and bool(scope["res"].converged)


def test_task_vector_example_runs():
    code = re.findall(r"## Using the library.*?```python\n.*?```.*?```python\n(.*?)```", README, re.S)[0]
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert 0 <= scope["res"].best_layer < 30 and scope["logits"].shape == (1, 49152)


def test_experiment_table_lists_every_experiment():
    from iclab.runtime import load_experiments

    names = {n for n in load_experiments() if n.startswith(("spinglass.", "taskvectors.", "grammar."))}
    listed = set(re.findall(r"\| `((?:spinglass|taskvectors|grammar)\.\w+)` \|", README))
    assert names == listed
