"""The streamed, seeded corpus: deterministic, prefix-stable, aligned arrays, valid ids."""

import numpy as np
import pytest

from iclab.grammar._cag import Emit, Grammar, Nonterminal, Rule
from iclab.grammar._corpus import EOS, sample_corpus, stream_documents
from iclab.grammar._world import ROLES, World, WorldConfig
from iclab.runtime._errors import IclabError


@pytest.fixture(scope="module")
def corpus(world):
    return sample_corpus(world.grammar, 3000, seed=5, roles=ROLES)


def arrays(c):
    return {"ids": c.ids, "role": c.role, "iter_index": c.iter_index, "template": c.template, "doc": c.doc,
            **{f"tag:{k}": v for k, v in c.tags.items()}}


def test_deterministic_given_the_seed(world, corpus):
    again = sample_corpus(world.grammar, 3000, seed=5, roles=ROLES)
    for name, a in arrays(corpus).items():
        np.testing.assert_array_equal(a, arrays(again)[name], err_msg=name)
    assert again.tag_values == corpus.tag_values and again.n_docs == corpus.n_docs
    other = sample_corpus(world.grammar, 3000, seed=6, roles=ROLES)
    assert not np.array_equal(other.ids, corpus.ids)


def test_shorter_corpus_is_a_prefix(world, corpus):
    short = sample_corpus(world.grammar, 700, seed=5, roles=ROLES)
    long_arrays = arrays(corpus)
    for name, a in arrays(short).items():
        np.testing.assert_array_equal(a, long_arrays[name][:700], err_msg=name)
    for tag, values in short.tag_values.items():  # string tags are numbered by first appearance
        assert corpus.tag_values[tag][:len(values)] == values
    # without a fixed role list, role ids are numbered by first appearance: still a prefix
    a, b = sample_corpus(world.grammar, 400, seed=1), sample_corpus(world.grammar, 900, seed=1)
    np.testing.assert_array_equal(a.role, b.role[:400])
    assert b.roles[:len(a.roles)] == a.roles


def test_every_array_has_the_corpus_length(corpus):
    assert len(corpus) == 3000
    for name, a in arrays(corpus).items():
        assert a.shape == (3000,), name
    assert corpus.n_docs >= 2 and corpus.doc.max() == corpus.n_docs - 1


def test_starts_with_eos_and_documents_are_eos_separated(world, corpus):
    eos = world.token_id[EOS]
    assert corpus.ids[0] == eos and corpus.text(0, 1) == [EOS]
    # every document follows an EOS: the doc index changes only right after one
    changes = np.flatnonzero(np.diff(corpus.doc) != 0) + 1
    assert all(corpus.ids[i - 1] == eos for i in changes[1:])
    # document 0 is the stream's first derivation
    first = next(stream_documents(world.grammar, 5))
    assert corpus.text(1, 1 + len(first.tokens)) == first.text


def test_roles_cover_all_roles(corpus):
    assert corpus.roles == ROLES  # the fixed role list, nothing appended: the world emits only these
    assert corpus.role[1:].min() >= 0 and corpus.role.max() < len(corpus.roles)
    eos = corpus.roles.index("eos")
    np.testing.assert_array_equal(corpus.role[1:] == eos, corpus.ids[1:] == corpus.vocab.index(EOS))
    names = {corpus.roles[r] for r in corpus.role[1:]}
    assert {"x", "sep_io", "y", "sep_ex", "end", "eos"} <= names


def test_ids_in_vocabulary_and_metadata_consistent(world, corpus):
    assert corpus.vocab == world.vocab
    assert corpus.ids.min() >= 0 and corpus.ids.max() < len(corpus.vocab)
    x_role = corpus.roles.index("x")
    xs = corpus.role == x_role
    assert xs.any() and (corpus.iter_index[xs] >= 0).all() and (corpus.template[xs] >= 0).all()
    # the xval tag of an input token is the object it shows
    objs = [world.vocab[i] for i in corpus.ids[xs]]
    assert objs == [f"o{v}" for v in corpus.tags["xval"][xs]]
    # task tags index their value table
    assert corpus.tags["task"].max() < len(corpus.tag_values["task"])


def test_corpus_errors():
    g = Grammar([Nonterminal("S", [Rule([Emit("a")])])], "S", vocab=["<eos>", "a"])
    with pytest.raises(IclabError, match="at least 2"):
        sample_corpus(g, 1, seed=0)
    with pytest.raises(IclabError, match="vocabulary"):
        sample_corpus(Grammar([Nonterminal("S", [Rule([Emit("a")])])], "S"), 10, seed=0)
    with pytest.raises(IclabError, match="not in its vocabulary"):
        sample_corpus(Grammar([Nonterminal("S", [Rule([Emit("b")])])], "S", vocab=["<eos>", "a"]), 10, seed=0)
    with pytest.raises(IclabError, match="document separator"):
        sample_corpus(Grammar([Nonterminal("S", [Rule([Emit("a")])])], "S", vocab=["a"]), 10, seed=0)
    c = sample_corpus(g, 9, seed=0)
    assert c.text() == ["<eos>", "a", "<eos>", "a", "<eos>", "a", "<eos>", "a", "<eos>"]


@pytest.mark.parametrize("cfg", [WorldConfig(), WorldConfig(n_binary=1, n_triples=8)])
def test_iteration_index_matches_the_yield(cfg):
    """The copy number the probes read is what a reader of the text would count: inside a block, the
    number of ';' before the token (a separator closes its copy); -1 outside ITER blocks (free text, '.')."""
    world = World(cfg)
    c = sample_corpus(world.grammar, 20_000, seed=5, roles=ROLES)
    text = c.text()
    expected, in_iter, copies = [], False, 0
    for tok in text:
        if tok in (EOS, "."):
            expected.append(-1)
            in_iter = None  # the next token opens a block
            continue
        if in_iter is None:
            in_iter, copies = not tok.startswith("w"), 0  # free-text blocks start with a word
        expected.append(copies if in_iter else -1)
        copies += tok == ";"
    expected = np.asarray(expected)
    assert (c.iter_index == expected).all(), np.flatnonzero(c.iter_index != expected)[:5]
    assert c.iter_index.max() >= 10  # long iterations occur, so the index is not trivially small


def test_parallel_sampling_is_the_serial_stream(monkeypatch):
    """Chunks of documents drawn by several processes and joined in order are the serial corpus, token
    for token (small chunks here so that a small corpus takes the parallel path)."""
    from iclab.grammar import _corpus as corpus_module

    monkeypatch.setattr(corpus_module, "CHUNK_DOCS", 40)
    world = World(WorldConfig(n_binary=1, n_triples=8))
    serial = sample_corpus(world.grammar, 30_000, seed=4).ids
    parallel = corpus_module.token_ids(world.grammar, 30_000, seed=4, workers=2)
    assert parallel.dtype == serial.dtype and np.array_equal(parallel, serial)


def test_sampling_workers_leave_interrupts_to_their_parent():
    """The pool ends its workers with SIGTERM: a worker that kept the handler it inherited (the CLI's
    raises KeyboardInterrupt) printed a traceback; ours ignore Ctrl-C and die silently on SIGTERM."""
    import multiprocessing
    import signal

    from iclab.grammar._corpus import _quiet_worker

    def raising(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raising)  # what `iclab` installs, inherited by fork
    try:
        with multiprocessing.get_context("fork").Pool(1, initializer=_quiet_worker) as pool:
            handlers = pool.apply(signal.getsignal, (signal.SIGTERM,)), pool.apply(signal.getsignal, (signal.SIGINT,))
    finally:
        signal.signal(signal.SIGTERM, old)
    assert handlers == (signal.SIG_DFL, signal.SIG_IGN)
