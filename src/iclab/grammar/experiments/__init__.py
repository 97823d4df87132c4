"""Compositional-grammar experiments (Hahn & Goyal 2023): one small module per result.

Importing this package registers every module in it (`iclab list` shows them); each
module registers `grammar.<name>` with a config, `quick` and `paper` presets.
"""

import importlib
import pkgutil

from iclab.runtime import ResearchLine, register_line

register_line(ResearchLine("grammar", "ICL from compositional structure", "iclab.grammar",
                           "Hahn, Goyal 2023, A theory of emergent in-context learning as implicit structure induction",
                           quick_minutes=17, rank=3))

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")
