"""A streamed, seeded pretraining corpus of grammar yields, each token with its latent metadata.

Document i is drawn from its own generator seeded by (seed, i), so the corpus is a stream:
the first n tokens are the same whatever length is asked for (a smaller data size is a prefix
of a larger one), and any document can be regenerated alone. Documents are joined by EOS,
and the corpus starts with one, so every document (like every ICL prompt) follows an EOS.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iclab.runtime import IclabError

from ._cag import Derivation, Grammar

EOS = "<eos>"


def document_rng(seed: int, index: int) -> random.Random:
    return random.Random((seed << 40) | index)


def stream_documents(grammar: Grammar, seed: int, start: int = 0) -> Iterator[Derivation]:
    """Documents start, start+1, ... of the seeded stream (one sampler, so template ids are stable)."""
    sampler = grammar.sampler()
    i = start
    while True:
        yield sampler.sample(document_rng(seed, i))
        i += 1


@dataclass
class Corpus:
    """Token ids and per-token metadata, all (n,) arrays; -1 where a field does not apply."""

    ids: np.ndarray  # (n,) int32 token ids
    role: np.ndarray  # (n,) int16 index into `roles`
    iter_index: np.ndarray  # (n,) int16 copy number inside an ITER
    template: np.ndarray  # (n,) int32 ITER template id (the sampler's numbering)
    doc: np.ndarray  # (n,) int32 document index
    tags: dict[str, np.ndarray]  # (n,) int32 per tag; string tags index into `tag_values[tag]`
    roles: list[str]
    vocab: list[str]
    tag_values: dict[str, list[str]] = field(default_factory=dict)
    n_docs: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [self.vocab[i] for i in self.ids[start:stop]]


def sample_corpus(grammar: Grammar, n_tokens: int, seed: int, *, roles: list[str] | None = None) -> Corpus:
    """The first `n_tokens` tokens of the stream (the last document is cut), with metadata."""
    if grammar.vocab is None:
        raise IclabError("sample_corpus needs a grammar with a vocabulary (Grammar(..., vocab=[...]))")
    if n_tokens < 2:
        raise IclabError(f"a corpus needs at least 2 tokens (got {n_tokens})")
    token_id = {t: i for i, t in enumerate(grammar.vocab)}
    if EOS not in token_id:
        raise IclabError(f"the grammar's vocabulary needs the document separator {EOS!r}")
    role_list = list(roles or [])
    role_ids = {r: i for i, r in enumerate(role_list)}

    def role_id(name: str) -> int:
        if name not in role_ids:
            role_ids[name] = len(role_list)
            role_list.append(name)
        return role_ids[name]

    eos = role_id("eos")
    ids, role, iter_index, template, doc = [token_id[EOS]], [eos], [-1], [-1], [-1]
    tags: dict[str, list[int]] = {}
    tag_values: dict[str, dict[str, int]] = {}
    n_docs = 0
    for d, derivation in enumerate(stream_documents(grammar, seed)):
        if len(ids) >= n_tokens:
            break
        n_docs += 1
        for tok in derivation.tokens:
            tid = token_id.get(tok.text)
            if tid is None:
                raise IclabError(f"the grammar emitted {tok.text!r}, which is not in its vocabulary; add it")
            ids.append(tid)
            role.append(role_id(tok.role))
            iter_index.append(tok.iter_index)
            template.append(tok.template)
            doc.append(d)
            for name, value in tok.tags.items():
                col = tags.get(name)
                if col is None:
                    col = tags[name] = [-1] * (len(ids) - 1)
                if isinstance(value, str):
                    table = tag_values.setdefault(name, {})
                    value = table.setdefault(value, len(table))
                col.append(int(value))
            for name, col in tags.items():  # tags this token does not carry
                if len(col) < len(ids):
                    col.append(-1)
        ids.append(token_id[EOS])
        role.append(eos)
        iter_index.append(-1)
        template.append(-1)
        doc.append(d)
        for col in tags.values():
            col.append(-1)
    n = n_tokens
    return Corpus(
        ids=np.asarray(ids[:n], dtype=np.int32), role=np.asarray(role[:n], dtype=np.int16),
        iter_index=np.asarray(iter_index[:n], dtype=np.int16), template=np.asarray(template[:n], dtype=np.int32),
        doc=np.asarray(doc[:n], dtype=np.int32),
        tags={k: np.asarray(v[:n], dtype=np.int32) for k, v in tags.items()},
        roles=role_list, vocab=list(grammar.vocab),
        tag_values={k: sorted(v, key=v.get) for k, v in tag_values.items()}, n_docs=n_docs)


_FORKED: tuple[Grammar, int] | None = None  # (grammar, seed) of the pool below, inherited by its forked workers
CHUNK_DOCS = 2000  # documents per parallel task (about 10⁵ tokens)


def _quiet_worker() -> None:
    """A sampling worker leaves interrupts to its parent: it ignores Ctrl-C (sent to the whole process
    group) and dies silently when the pool ends it (SIGTERM), instead of running the handler it
    inherited by fork (the CLI's raises KeyboardInterrupt: a traceback per worker on stderr)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _chunk_ids(start: int) -> np.ndarray:
    grammar, seed = _FORKED
    token_id = {t: i for i, t in enumerate(grammar.vocab)}
    sampler, out = grammar.sampler(), []
    for i in range(start, start + CHUNK_DOCS):
        out += [token_id[t.text] for t in sampler.sample(document_rng(seed, i)).tokens]
        out.append(token_id[EOS])
    return np.asarray(out, dtype=np.int32)


def token_ids(grammar: Grammar, n_tokens: int, seed: int, workers: int = 1) -> np.ndarray:
    """`sample_corpus(...).ids` without the metadata, sampled by `workers` processes when > 1: documents
    are seeded one by one, so chunks of them are drawn in parallel and joined in order, identical to the
    serial stream (tested). A 10⁸-token corpus is then minutes instead of most of an hour."""
    global _FORKED
    if workers <= 1 or n_tokens <= 4 * CHUNK_DOCS * 50:
        return sample_corpus(grammar, n_tokens, seed).ids
    import multiprocessing

    _FORKED = (grammar, seed)  # a grammar holds lambdas: workers inherit it by fork instead of pickling
    parts, total = [np.asarray([grammar.vocab.index(EOS)], dtype=np.int32)], 1
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_quiet_worker) as pool:
            start = 0
            while total < n_tokens:  # rounds of 2 chunks per worker, in document order
                starts = range(start, start + 2 * workers * CHUNK_DOCS, CHUNK_DOCS)
                for chunk in pool.map(_chunk_ids, starts, chunksize=1):
                    parts.append(chunk)
                    total += len(chunk)
                start = starts[-1] + CHUNK_DOCS
    finally:
        _FORKED = None
    return np.concatenate(parts)[:n_tokens]


def cached_token_ids(grammar: Grammar, n_tokens: int, seed: int, cache_dir: Path | None, key: str,
                     workers: int = 1) -> np.ndarray:
    """The first `n_tokens` ids of the stream, from `cache_dir` when a long enough prefix is there.

    `key` must identify the grammar (e.g. a hash of the world's config). Because the corpus is a
    stream, any cached corpus at least this long serves by slicing. A file lock per key makes
    parallel workers generate it once; files are written atomically and read without pickle.
    `workers` > 1 samples a missing corpus in that many processes (`token_ids`).
    """
    if cache_dir is None:
        return token_ids(grammar, n_tokens, seed, workers)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{key}-seed{seed}"
    with open(cache_dir / f"{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in sorted(cache_dir.glob(f"{stem}-*.npy")):
            if int(path.stem.rsplit("-", 1)[1]) >= n_tokens:
                return np.load(path, allow_pickle=False)[:n_tokens]
        ids = token_ids(grammar, n_tokens, seed, workers)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{stem}-", suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, ids, allow_pickle=False)
        os.replace(tmp, cache_dir / f"{stem}-{n_tokens}.npy")
        return ids
