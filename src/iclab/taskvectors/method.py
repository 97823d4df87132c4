"""The task-vector method: extract θ(S) at every layer, patch it into the bare query, sweep layers.

θ(S) is the residual stream at the last prompt token (the arrow) after block L, read from the
demonstrations followed by a dummy query. The rule application f(x; θ) is the forward pass on the
bare query line with that state written back at block L. The layer sweep runs the query prefix
once with a KV cache and then only the last token, for all layers at once (one row per layer).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from iclab.models import Batch, LoadedModel, forward_last, patch_residual, record_residual


@dataclass
class TaskVectorRunner:
    """Batched, counted forward passes on one model. `tokens` counts every token a forward pass
    processes (new tokens only when a cache is reused), the cost measure of the benchmark."""

    lm: LoadedModel
    batch_size: int = 32
    tokens: int = 0
    passes: int = 0

    @property
    def model(self) -> torch.nn.Module:
        return self.lm.model

    @property
    def n_layers(self) -> int:
        return self.lm.n_layers

    def _batches(self, prompts: Sequence[str], batch_size: int | None = None) -> Iterator[tuple[list[int], Batch]]:
        """Index chunks of similar length (less padding), each with its left-padded batch."""
        bs = batch_size or self.batch_size
        ids = self.lm.tokenizer(list(prompts))["input_ids"]  # tokenized once, padded per batch
        order = sorted(range(len(prompts)), key=lambda i: (len(ids[i]), i))
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            padded = self.lm.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            yield idx, Batch(padded["input_ids"], padded["attention_mask"])

    def _count(self, batch: Batch, n_new: int | None = None) -> None:
        self.passes += 1
        self.tokens += batch.n_tokens if n_new is None else n_new * batch.input_ids.shape[0]

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        return [self.lm.tokenizer.decode([int(t)], skip_special_tokens=True) for t in token_ids.reshape(-1)]

    @torch.no_grad()
    def predict(self, prompts: Sequence[str]) -> torch.Tensor:
        """Greedy first token of each prompt: (N,) token ids."""
        out = torch.empty(len(prompts), dtype=torch.long)
        for idx, batch in self._batches(prompts):
            logits, _ = forward_last(self.model, batch)
            self._count(batch)
            out[idx] = logits.argmax(-1)
        return out

    @torch.no_grad()
    def last_token_states(self, prompts: Sequence[str]) -> torch.Tensor:
        """Every block's output at each prompt's last token: (N, n_layers, D) float32."""
        out: torch.Tensor | None = None
        for idx, batch in self._batches(prompts):
            with record_residual(self.model) as rec:
                forward_last(self.model, batch)
            self._count(batch)
            states = rec.states  # (B, L, D)
            if out is None:
                out = torch.empty(len(prompts), *states.shape[1:])
            out[idx] = states
        assert out is not None
        return out

    @torch.no_grad()
    def predict_patched(self, prompts: Sequence[str], vectors: torch.Tensor, layers: torch.Tensor | int,
                        mode: str = "replace", alpha: float = 1.0) -> torch.Tensor:
        """Greedy first token with row i's last-token state at block layers[i] set to vectors[i] (N, D)."""
        layers = torch.as_tensor(layers).expand(len(prompts))
        out = torch.empty(len(prompts), dtype=torch.long)
        for idx, batch in self._batches(prompts):
            with patch_residual(self.model, vectors[idx], layers[idx], positions=-1, mode=mode, alpha=alpha):
                logits, _ = forward_last(self.model, batch)
            self._count(batch)
            out[idx] = logits.argmax(-1)
        return out

    @torch.no_grad()
    def sweep_patched(self, prompts: Sequence[str], thetas: torch.Tensor, layers: Sequence[int],
                      mode: str = "replace", alpha: float = 1.0) -> torch.Tensor:
        """Patched predictions for every layer in `layers`: (N, len(layers)) token ids.

        The prompts' prefixes (all but the last token) run once with a KV cache; the cache is then
        repeated once per layer and only the last token runs, with row (i, l) patched at layer l.
        Causal attention means the prefix never sees the patched last token, so this equals
        rerunning the whole prompt per layer (tested).
        """
        n_layers = len(layers)
        layer_t = torch.as_tensor(list(layers))
        out = torch.empty(len(prompts), n_layers, dtype=torch.long)
        per_batch = max(1, self.batch_size * 8 // n_layers)  # episodes per cached batch
        for idx, batch in self._batches(prompts, per_batch):
            prefix = Batch(batch.input_ids[:, :-1], batch.attention_mask[:, :-1])
            _, cache = forward_last(self.model, prefix, use_cache=True)
            self._count(prefix)
            cache.batch_repeat_interleave(n_layers)  # rows: episode-major, layer-minor
            last = Batch(
                batch.input_ids[:, -1:].repeat_interleave(n_layers, 0),
                batch.attention_mask.repeat_interleave(n_layers, 0),
            )
            vectors = thetas[idx][:, layer_t].reshape(len(idx) * n_layers, -1)  # (B*L, D)
            with patch_residual(self.model, vectors, layer_t.repeat(len(idx)), positions=-1, mode=mode, alpha=alpha):
                logits, _ = forward_last(self.model, last, past_key_values=cache)
            self._count(last, n_new=1)
            out[idx] = logits.argmax(-1).reshape(len(idx), n_layers)
        return out

    @torch.no_grad()
    def sweep_patched_naive(self, prompts: Sequence[str], thetas: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """The reference sweep: the whole query prompt once per layer (for tests and the benchmark)."""
        return torch.stack([self.predict_patched(prompts, thetas[:, l], l) for l in layers], dim=1)
