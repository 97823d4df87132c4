"""Spin-glass experiments: one small module per figure of Li, Bai & Huang (2024).

Importing this package registers them all (`iclab list` shows them).
"""

import importlib

FIGURES = []  # module names, in paper order; each registers `spinglass.<name>`

for _name in FIGURES:
    importlib.import_module(f"{__name__}.{_name}")
