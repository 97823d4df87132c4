"""Task-vector experiments (Hendel, Geva, Globerson 2023): main table, conflict, vocabulary, t-SNE, templates.

Importing this package registers every module in it (`iclab list` shows them); each
module registers `taskvectors.<name>` with a config, `quick` and `paper` presets.
"""

import importlib
import pkgutil

from iclab.runtime import ResearchLine, register_line

register_line(ResearchLine("taskvectors", "Task vectors in pretrained LMs", "iclab.taskvectors",
                           "Hendel, Geva, Globerson 2023, In-context learning creates task vectors", quick_minutes=8,
                           rank=2))

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")
