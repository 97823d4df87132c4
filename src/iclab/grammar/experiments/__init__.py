"""Compositional-grammar experiments (Hahn & Goyal 2023): one small module per result.

Importing this package registers every module in it (`iclab list` shows them); each
module registers `grammar.<name>` with a config, `quick` and `paper` presets.
"""

import importlib
import pkgutil

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")
