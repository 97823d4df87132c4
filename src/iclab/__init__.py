"""iclab: a laboratory for in-context learning research.

One subpackage per research line, each with its experiments in `<line>/experiments/`:
`iclab.spinglass` (linear attention as a spin glass), `iclab.taskvectors` (task and function
vectors in pretrained LMs), `iclab.grammar` (ICL from compositional structure). They share
`iclab.models` (loading, hooking and training causal LMs) and `iclab.runtime` (configs, the run
store, sweeps, claims, reports, the `iclab` CLI). Each package's API is its `__all__`.
"""

__version__ = "0.1.0"
