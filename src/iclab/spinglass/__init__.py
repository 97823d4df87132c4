"""Linear attention on in-context linear regression as a spin glass (Li, Bai, Huang 2024).

    g = torch.Generator().manual_seed(0)
    stats = sufficient_stats(D=20, N=100, P=10_000, generator=g)   # prompts reduced to what the loss needs
    sg = SpinGlass.from_stats(stats, lam0=0.01)                     # couplings and fields of the Hamiltonian
    W_ridge = sg.ground_state()                                     # the exact ground state
    res = amp(sg.J, sg.h, sg.lam, beta=100.0, generator=g)          # its Boltzmann marginals, by AMP

The model, the loss and the mapping, in our words: docs/spinglass.md. Training the attention
models themselves: `train_prompts`, `train_quadratic`, `train_architecture`.
"""

from ._amp import AMPResult, amp, amp_init, amp_per_spin_loop, amp_residual
from ._analysis import (block_masks, contrast_ratio, coupling_blocks, histogram_counts, icl_error_floor,
                        kl_divergence_counts, kl_divergence_hist, marchenko_pastur_density, population_optimum,
                        zero_ratio_law)
from ._data import (Prompts, SuffStats, TaskPool, attention_output, dmmse_predict, features, flatten_spins, predict,
                    prompt_stream, ridge_predict, sample_prompts, stack_stats, sufficient_stats_from,
                    token_correlation_factor)
from ._sampling import ReducedPrompts, bartlett, reduced_sufficient_stats, sample_reduced, sufficient_stats, wishart
from ._hamiltonian import SpinGlass
from ._attention import (ARCHITECTURES, FullLinearAttention, MergedLinearAttention, ModelConfig,
                         MultiHeadLinearAttention, SeparateLinearAttention, SmallTransformer, SoftmaxAttention,
                         build_model, linear_attention, prompt_stats)
from ._train import (ArchitectureResult, TrainResult, init_params, quadratic_loss, train_architecture, train_prompts,
                     train_quadratic)

__all__ = [
    "AMPResult", "ARCHITECTURES", "ArchitectureResult", "FullLinearAttention", "MergedLinearAttention", "ModelConfig",
    "MultiHeadLinearAttention", "Prompts", "ReducedPrompts", "SeparateLinearAttention", "SmallTransformer",
    "SoftmaxAttention", "SpinGlass", "SuffStats", "TaskPool", "TrainResult", "amp", "amp_init", "amp_per_spin_loop",
    "amp_residual", "attention_output", "bartlett", "block_masks", "build_model", "contrast_ratio", "coupling_blocks",
    "dmmse_predict", "features", "flatten_spins", "histogram_counts", "icl_error_floor", "init_params",
    "kl_divergence_counts", "kl_divergence_hist", "linear_attention", "marchenko_pastur_density",
    "population_optimum", "predict", "prompt_stats", "prompt_stream", "quadratic_loss", "reduced_sufficient_stats",
    "ridge_predict", "sample_prompts", "sample_reduced", "stack_stats", "sufficient_stats", "sufficient_stats_from",
    "token_correlation_factor", "train_architecture", "train_prompts", "train_quadratic", "wishart", "zero_ratio_law",
]  # fmt: skip
