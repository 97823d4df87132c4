"""iclab: a laboratory for in-context learning research.

Research lines live in subpackages (`iclab.linear`: linear attention and the spin-glass
model); the shared runtime (`iclab.runtime`) gives them configs, runs, sweeps and reports.
"""

__version__ = "0.1.0"
