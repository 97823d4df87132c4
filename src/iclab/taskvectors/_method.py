"""The task-vector method: extract θ(S) at every layer, patch it into the bare query, sweep layers.

θ(S) is the residual stream at the last prompt token (the arrow) after block L, read from the
demonstrations followed by a dummy query. The rule application f(x; θ) is the forward pass on the
bare query line with that state written back at block L. The layer sweep runs the query prefix
once with a KV cache and then only the last token, for all layers at once (one row per layer).

Whole answers (`max_new_tokens > 1`) decode greedily from there with the KV cache: θ is patched at
the query's last token only (whose output is the answer's first token), as in the paper, and the
prompt is never recomputed. A CUDA out-of-memory error halves the batch and retries.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from iclab.models import Batch, LoadedModel, forward_last, patch_residual, record_residual
from iclab.runtime import IclabError

@dataclass
class TaskVectorRunner:
    """Batched, counted forward passes on one model. `tokens` counts every token a forward pass
    processes (new tokens only when a cache is reused), the cost measure of the benchmark.
    `batch_size` is an upper bound: it halves on a CUDA out-of-memory error."""

    lm: LoadedModel
    batch_size: int = 32
    tokens: int = 0
    passes: int = 0
    _line_end: dict[int, bool] = field(default_factory=dict, repr=False)  # token id -> ends an answer
    _oom_said: bool = field(default=False, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        return self.lm.model

    @property
    def n_layers(self) -> int:
        return self.lm.n_layers

    @property
    def pad_id(self) -> int:
        return int(self.lm.tokenizer.pad_token_id)

    def _each_batch(self, prompts: Sequence[str], fn: Callable[[list[int], Batch], None],
                    size: Callable[[], int] | None = None) -> None:
        """Call fn(indices, left-padded batch) over chunks of similar length (less padding). On a CUDA
        out-of-memory error the batch size halves (said once) and the rest is re-chunked."""
        size = size or (lambda: self.batch_size)
        ids = self.lm.tokenizer(list(prompts))["input_ids"]  # tokenized once, padded per batch
        todo = sorted(range(len(prompts)), key=lambda i: (len(ids[i]), i))
        while todo:
            idx, bs = todo[: size()], size()
            padded = self.lm.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            try:
                fn(idx, Batch(padded["input_ids"], padded["attention_mask"]))
            except torch.OutOfMemoryError:
                if len(idx) == 1:
                    raise IclabError(f"{self.lm.name}: out of GPU memory on a single prompt; use dtype=bfloat16, "
                                     "more GPUs (device=cuda spreads the model over all of them) or device=cpu") from None
                torch.cuda.empty_cache()
                self.batch_size = max(1, min(self.batch_size, len(idx) // 2))
                if not self._oom_said:  # said once; later halvings are silent
                    self._oom_said = True
                    print(f"iclab: CUDA out of memory at {len(idx)} prompts per batch; halving the batch until it "
                          f"fits (now {self.batch_size})", file=sys.stderr)
                continue
            todo = todo[bs:]

    def _count(self, batch: Batch, n_new: int | None = None) -> None:
        self.passes += 1
        self.tokens += batch.n_tokens if n_new is None else n_new * batch.input_ids.shape[0]

    def decode(self, token_ids: torch.Tensor) -> list[str]:
        """(N,) first tokens -> their strings; (N, n) generated tokens -> each row's text (padding dropped)."""
        tok = self.lm.tokenizer
        if token_ids.ndim == 1:
            return [tok.decode([int(t)], skip_special_tokens=True) for t in token_ids]
        return [tok.decode([int(t) for t in row if int(t) != self.pad_id], skip_special_tokens=True)
                for row in token_ids.reshape(-1, token_ids.shape[-1])]

    def _ends(self, tokens: torch.Tensor) -> torch.Tensor:
        """Which tokens end an answer: the end-of-sequence token or any token containing a newline."""
        out = []
        for t in tokens.tolist():
            if t not in self._line_end:
                self._line_end[t] = t in (self.lm.tokenizer.eos_token_id, self.pad_id) or \
                    "\n" in self.lm.tokenizer.decode([t])
            out.append(self._line_end[t])
        return torch.tensor(out, dtype=torch.bool)

    def _decode_on(self, first: torch.Tensor, cache, mask: torch.Tensor, max_new_tokens: int,
                   viable: Callable[[int, str], bool] | None = None) -> torch.Tensor:
        """Greedy decoding after the first token (R,), from the cache of everything before it:
        (R, max_new_tokens), rows padded after their line ends. Finished rows leave the batch (their
        cache rows are dropped), so each step runs only the rows still decoding. `viable(r, text)`, if
        given, may also stop row r early once its text can no longer be scored correct."""
        R = len(first)
        out = torch.full((R, max_new_tokens), self.pad_id, dtype=torch.long)
        out[:, 0] = first
        live = ~self._ends(first)
        if viable is not None:
            live &= self._viable(viable, torch.arange(R), out[:, :1])
        rows = live.nonzero().squeeze(1)  # (A,) rows still decoding, in the order of the cache's rows
        if len(rows) < R:
            cache.batch_select_indices(rows.to(_cache_device(cache)))
        mask, tok = mask[rows], first[rows]
        for step in range(1, max_new_tokens):
            if len(rows) == 0:
                break
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], 1)
            batch = Batch(tok[:, None], mask)
            logits, cache = forward_last(self.model, batch, past_key_values=cache, use_cache=True)
            self._count(batch, n_new=1)
            tok = logits.argmax(-1).cpu()
            out[rows, step] = tok
            keep = ~self._ends(tok)
            if viable is not None:
                keep &= self._viable(viable, rows, out[rows, : step + 1])
            if not bool(keep.all()):
                idx = keep.nonzero().squeeze(1)
                cache.batch_select_indices(idx.to(_cache_device(cache)))
                rows, mask, tok = rows[idx], mask[idx], tok[idx]
        return out

    def _viable(self, viable: Callable[[int, str], bool], rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        texts = self.decode(tokens) if tokens.shape[1] > 1 else self.decode(tokens[:, 0])
        return torch.tensor([viable(int(r), t) for r, t in zip(rows, texts)], dtype=torch.bool)

    @torch.no_grad()
    def predict(self, prompts: Sequence[str], max_new_tokens: int = 1) -> torch.Tensor:
        """Greedy first token of each prompt, (N,); with max_new_tokens > 1 the whole answer, (N, max_new_tokens)."""
        return self.predict_patched(prompts, None, -1, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def last_token_states(self, prompts: Sequence[str]) -> torch.Tensor:
        """Every block's output at each prompt's last token: (N, n_layers, D) float32."""
        out: list[torch.Tensor | None] = [None]

        def run(idx: list[int], batch: Batch) -> None:
            with record_residual(self.model) as rec:
                forward_last(self.model, batch)
            self._count(batch)
            states = rec.states  # (B, L, D)
            if out[0] is None:
                out[0] = torch.empty(len(prompts), *states.shape[1:])
            out[0][idx] = states

        self._each_batch(prompts, run)
        assert out[0] is not None
        return out[0]

    @torch.no_grad()
    def predict_patched(self, prompts: Sequence[str], vectors: torch.Tensor | None, layers: torch.Tensor | int,
                        mode: str = "replace", alpha: float = 1.0, max_new_tokens: int = 1) -> torch.Tensor:
        """Greedy first token with row i's last-token state at block layers[i] set to vectors[i] (N, D)
        ((N,) token ids); with max_new_tokens > 1 decoding goes on unpatched from the cache ((N, max_new_tokens)).
        `vectors=None` patches nothing."""
        layers = torch.as_tensor(layers).expand(len(prompts))
        out = torch.empty(len(prompts), max_new_tokens, dtype=torch.long)

        def run(idx: list[int], batch: Batch) -> None:
            if vectors is None:
                logits, cache = forward_last(self.model, batch, use_cache=max_new_tokens > 1)
            else:
                with patch_residual(self.model, vectors[idx], layers[idx], positions=-1, mode=mode, alpha=alpha):
                    logits, cache = forward_last(self.model, batch, use_cache=max_new_tokens > 1)
            self._count(batch)
            first = logits.argmax(-1).cpu()
            out[idx] = first[:, None] if max_new_tokens == 1 else \
                self._decode_on(first, cache, batch.attention_mask, max_new_tokens)

        self._each_batch(prompts, run)
        return out[:, 0] if max_new_tokens == 1 else out

    @torch.no_grad()
    def sweep_patched(self, prompts: Sequence[str], thetas: torch.Tensor, layers: Sequence[int],
                      mode: str = "replace", alpha: float = 1.0, max_new_tokens: int = 1,
                      viable: Callable[[int, str], bool] | None = None) -> torch.Tensor:
        """Patched predictions for every layer in `layers`: (N, len(layers)) token ids, or
        (N, len(layers), max_new_tokens) whole answers.

        The prompts' prefixes (all but the last token) run once with a KV cache; the cache is then
        repeated once per layer and only the last token runs, with row (i, l) patched at layer l.
        Causal attention means the prefix never sees the patched last token, so this equals
        rerunning the whole prompt per layer (tested). Whole answers decode on from each row's cache;
        `viable(i, text)` (prompt i's answer so far) lets a row stop once it cannot be scored correct, which
        is all a sweep needs (its tokens after that point are padding).
        """
        n_layers = len(layers)
        layer_t = torch.as_tensor(list(layers))
        out = torch.empty(len(prompts), n_layers, max_new_tokens, dtype=torch.long)

        def run(idx: list[int], batch: Batch) -> None:
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
                logits, cache = forward_last(self.model, last, past_key_values=cache, use_cache=max_new_tokens > 1)
            self._count(last, n_new=1)
            first = logits.argmax(-1).cpu()  # (B*L,)
            keep = None if viable is None else (lambda r, text: viable(idx[r // n_layers], text))
            tokens = first[:, None] if max_new_tokens == 1 else \
                self._decode_on(first, cache, last.attention_mask, max_new_tokens, keep)
            out[idx] = tokens.reshape(len(idx), n_layers, max_new_tokens)

        self._each_batch(prompts, run, size=lambda: max(1, self.batch_size * 8 // n_layers))  # episodes per batch
        return out[..., 0] if max_new_tokens == 1 else out

    @torch.no_grad()
    def sweep_patched_naive(self, prompts: Sequence[str], thetas: torch.Tensor, layers: Sequence[int],
                            max_new_tokens: int = 1) -> torch.Tensor:
        """The reference sweep: the whole query prompt once per layer (for tests and the benchmark)."""
        return torch.stack([self.predict_patched(prompts, thetas[:, l], l, max_new_tokens=max_new_tokens)
                            for l in layers], dim=1)


def _cache_device(cache) -> torch.device:
    """Where a KV cache's first layer lives (its row selection runs there)."""
    layer = cache.layers[0] if hasattr(cache, "layers") else None
    keys = getattr(layer, "keys", None)
    return keys.device if keys is not None else torch.device("cpu")
