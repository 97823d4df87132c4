"""The README's content checks. Its code blocks are run by tests/test_docs_commands.py, with every
other command in the docs."""

import re
from pathlib import Path

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_experiment_table_lists_every_experiment():
    from iclab.runtime import load_experiments

    names = {n for n in load_experiments() if n.startswith(("spinglass.", "taskvectors.", "grammar."))}
    listed = set(re.findall(r"\| `((?:spinglass|taskvectors|grammar)\.\w+)` \|", README))
    assert names == listed
