"""The docs' own-experiment example runs exactly as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_own_experiment_example_from_docs(tmp_path):
    text = (ROOT / "docs" / "runtime.md").read_text()
    code = re.search(r"## Writing your own experiment.*?```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "my_experiment.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ICLAB_EXPERIMENTS": "my_experiment"}
    proc = subprocess.run([sys.executable, "-m", "iclab", "run", "mine.hello", "-q"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "runs" / "mine.hello").glob("*/figures/line.png"))
