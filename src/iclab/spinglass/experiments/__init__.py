"""Spin-glass experiments: one small module per figure of Li, Bai & Huang (2024).

Importing this package registers every module in it (`iclab list` shows them); each
module registers `spinglass.<name>` with a config, `quick` and `paper` presets.
"""

import importlib
import pkgutil

from iclab.runtime import ResearchLine, register_line

register_line(ResearchLine("spinglass", "Linear attention as a spin glass", "iclab.spinglass",
                           "Li, Bai, Huang 2024, Spin glass model of in-context learning", quick_minutes=5, rank=1))

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")
