"""The pre-training loss of merged linear attention as a Gaussian spin glass (docs/spinglass.md: mapping).

Spins are the (D+1)^2 entries of W (row-major). With S = mean_mu s s^T:

    J = -S,   h = mean_mu y s,   lambda = lambda0 + diag(S)
    H(W) = -sum_{k<l} J_kl W_k W_l - sum_k h_k W_k + 1/2 sum_k lambda_k W_k^2
         = 1/2 W^T A W - h^T W,   A = lambda0 I + S,

so the Boltzmann measure exp(-beta H) is exactly N(A^{-1} h, (beta A)^{-1}) and the ground state
is ridge regression. All tensors may carry leading batch dims (e.g. R repeats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._data import SuffStats, flatten_spins, sufficient_stats_from


@dataclass
class SpinGlass:
    J: Tensor  # (..., n, n) couplings, -S (diagonal kept, see `energy`)
    h: Tensor  # (..., n) fields
    lam: Tensor  # (..., n) site confinement lambda0 + diag(S)
    lam0: float  # L2 strength
    const: Tensor  # (...,) yy/2, so loss = H + const
    D: int

    @classmethod
    def from_stats(cls, stats: SuffStats, lam0: float) -> SpinGlass:
        S = stats.S
        return cls(
            J=-S,
            h=stats.h,
            lam=lam0 + torch.diagonal(S, dim1=-2, dim2=-1),
            lam0=float(lam0),
            const=torch.as_tensor(stats.yy, dtype=S.dtype) / 2,
            D=stats.D,
        )

    @classmethod
    def from_features(cls, s: Tensor, y: Tensor, lam0: float) -> SpinGlass:
        return cls.from_stats(sufficient_stats_from(s, y), lam0)

    @property
    def n(self) -> int:
        return self.J.shape[-1]

    @property
    def S(self) -> Tensor:
        return -self.J  # (..., n, n)

    def _eye(self) -> Tensor:
        return torch.eye(self.n, dtype=self.J.dtype)

    # -- energies -------------------------------------------------------------

    def energy(self, W: Tensor) -> Tensor:
        """H(W) evaluated term by term as in the boxed formula; W (..., D+1, D+1) or (..., n)."""
        w = flatten_spins(W, self.D)  # (..., n)
        J_upper = torch.triu(self.J, diagonal=1)  # (..., n, n), pairs k < l only
        pair = (w[..., None, :] @ J_upper @ w[..., :, None])[..., 0, 0]  # (...)
        return -pair - (self.h * w).sum(-1) + 0.5 * (self.lam * w * w).sum(-1)

    def loss(self, W: Tensor) -> Tensor:
        """(1/2P) sum_mu (y - y_hat)^2 + lambda0/2 ||W||^2, from the sufficient statistics."""
        w = flatten_spins(W, self.D)  # (..., n)
        quad = (w[..., None, :] @ self.S @ w[..., :, None])[..., 0, 0]  # (...)
        mse = quad - 2 * (self.h * w).sum(-1) + 2 * self.const
        return 0.5 * mse + 0.5 * self.lam0 * (w * w).sum(-1)

    def grad(self, W: Tensor) -> Tensor:
        """dH/dW = A W - h; W (..., D+1, D+1) or (..., n) -> (..., n)."""
        w = flatten_spins(W, self.D)  # (..., n)
        return (w[..., None, :] @ self.precision())[..., 0, :] - self.h  # A symmetric

    # -- exact Gaussian facts ---------------------------------------------------

    def precision(self) -> Tensor:
        """A = lambda0 I + S, the Hessian of H (and beta A the Boltzmann precision)."""
        return self.lam0 * self._eye() + self.S  # (..., n, n)

    def ground_state(self) -> Tensor:
        """argmin H = A^{-1} h (ridge); minimum-norm solution when A is singular (lambda0 = 0)."""
        A = self.precision()
        L, info = torch.linalg.cholesky_ex(A)
        if bool((info == 0).all()):
            return torch.cholesky_solve(self.h[..., None], L)[..., 0]  # (..., n)
        return (torch.linalg.pinv(A, hermitian=True) @ self.h[..., None])[..., 0]

    def sample_boltzmann(self, beta: float, n_samples: int, generator: torch.Generator) -> Tensor:
        """Exact draws from N(A^{-1} h, (beta A)^{-1}): mean + L^{-T} z / sqrt(beta), A = L L^T."""
        L = torch.linalg.cholesky(self.precision())  # (..., n, n); needs lambda0 > 0
        batch = self.J.shape[:-2]
        z = torch.randn(*batch, self.n, n_samples, generator=generator, dtype=self.J.dtype)
        noise = torch.linalg.solve_triangular(L.mT, z, upper=True) / math.sqrt(beta)
        return self.ground_state()[..., None, :] + noise.mT  # (..., n_samples, n)

    def langevin(
        self,
        beta: float,
        n_steps: int,
        step_size: float,
        n_chains: int,
        generator: torch.Generator,
        burn_in: int = 0,
        thin: int = 1,
        init: Tensor | None = None,
    ) -> Tensor:
        """Overdamped Langevin dW = -grad H dt + sqrt(2/beta) dB (Euler-Maruyama, parallel chains).

        Returns the states after steps burn_in+thin, burn_in+2*thin, ... <= n_steps as
        (n_kept, ..., n_chains, n). The discretised chain's stationary covariance is
        (beta A (I - dt A / 2))^{-1}: bias O(dt * ||A||), keep dt * ||A|| small.
        """
        batch = self.J.shape[:-2]
        A = self.precision()  # (..., n, n)
        shape = (*batch, n_chains, self.n)
        W = torch.zeros(shape, dtype=self.J.dtype) if init is None else init.expand(shape).clone()
        noise_scale = math.sqrt(2.0 * step_size / beta)
        kept = []
        for step in range(1, n_steps + 1):
            drift = W @ A - self.h[..., None, :]  # (..., n_chains, n)
            W = W - step_size * drift + noise_scale * torch.randn(
                shape, generator=generator, dtype=self.J.dtype
            )
            if step > burn_in and (step - burn_in) % thin == 0:
                kept.append(W)
        return torch.stack(kept)  # (n_kept, ..., n_chains, n)

    # -- landscape --------------------------------------------------------------

    def hessian_spectrum(self) -> Tensor:
        """Eigenvalues of the data Hessian S = -J (ascending); the full Hessian adds lambda0."""
        return torch.linalg.eigvalsh(self.S)  # (..., n)

    def zero_ratio(self, tol: float = 1e-9) -> Tensor:
        """Fraction of eigenvalues of S below tol * (largest eigenvalue): the zero modes."""
        eig = self.hessian_spectrum()  # (..., n)
        scale = eig.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(eig.dtype).tiny)
        return (eig.abs() <= tol * scale).to(eig.dtype).mean(-1)  # (...)
