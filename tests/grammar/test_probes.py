import numpy as np
import pytest

from iclab.grammar._probes import ProbeResult, control_labels, fit_probes, split_by_group
from iclab.runtime._errors import IclabError


def encoded(n=2000, L=2, d=16, K=4, n_types=500, group_size=20, seed=0, signal=3.0):
    """Layer 1 linearly encodes the label (class means + noise), layer 0 is pure noise;
    types are random and independent of the label (states carry no type information)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, size=n)  # (n,)
    states = rng.normal(size=(n, L, d))  # (n, L, d)
    means = rng.normal(size=(K, d))
    states[:, 1] += signal * means[labels]
    types = rng.integers(0, n_types, size=n)
    groups = np.arange(n) // group_size
    return states, labels, types, groups


def test_informative_layer_decodes_noise_layer_does_not():
    states, labels, types, groups = encoded()
    r = fit_probes(states, labels, types=types, groups=groups, target="role")
    assert isinstance(r, ProbeResult) and r.layers == [0, 1]
    assert r.accuracy.shape == r.control.shape == (2,)
    assert r.accuracy[1] > 0.9
    assert abs(r.accuracy[0] - r.majority) < 0.1
    assert r.n_classes == 4 and r.n_train + r.n_test == len(labels)


def test_selectivity_high_when_label_is_not_a_function_of_type():
    states, labels, types, groups = encoded(n_types=500)
    r = fit_probes(states, labels, types=types, groups=groups, target="role")
    # types are random and absent from the states: the control task is unlearnable
    assert r.selectivity[1] > 0.3
    assert r.control[1] < 0.45


def test_control_learnable_when_label_is_a_function_of_type():
    rng = np.random.default_rng(1)
    n, d, n_types = 2000, 16, 20
    types = rng.integers(0, n_types, size=n)
    labels = types % 4  # deterministic in the type
    emb = rng.normal(size=(n_types, d))
    states = np.stack([rng.normal(size=(n, d)), 3.0 * emb[types] + 0.3 * rng.normal(size=(n, d))], axis=1)
    groups = np.arange(n) // 20
    r = fit_probes(states, labels, types=types, groups=groups, target="t")
    # the states identify the type, so the probe can memorise the control labels too
    assert r.accuracy[1] > 0.9 and r.control[1] > 0.9
    assert abs(r.selectivity[1]) < 0.1


def test_control_labels_constant_per_type_and_from_label_set():
    rng = np.random.default_rng(2)
    types = rng.integers(0, 50, size=1000)
    labels = rng.choice([3, 7, 11], size=1000)
    c = control_labels(types, labels, seed=5)
    assert c.shape == labels.shape and set(np.unique(c)) <= {3, 7, 11}
    for t in np.unique(types):
        assert len(np.unique(c[types == t])) == 1
    assert np.array_equal(c, control_labels(types, labels, seed=5))


def test_split_keeps_groups_on_one_side():
    groups = np.repeat(np.arange(40), np.arange(1, 41))  # unequal group sizes
    train, test = split_by_group(groups, 0.25, seed=3)
    assert train.dtype == bool and np.array_equal(train, ~test)
    assert not set(groups[train]) & set(groups[test])
    assert len(np.unique(groups[test])) == 10
    t2, _ = split_by_group(groups, 0.25, seed=3)
    assert np.array_equal(train, t2)


def test_deterministic_and_rows():
    states, labels, types, groups = encoded(n=1500)
    kw = dict(types=types, groups=groups, target="mid", max_train=600, seed=4)
    a, b = fit_probes(states, labels, **kw), fit_probes(states, labels, **kw)
    assert np.array_equal(a.accuracy, b.accuracy) and np.array_equal(a.control, b.control)
    assert a.majority == b.majority and a.n_train == 600
    rows = a.rows()
    assert [r["layer"] for r in rows] == [0, 1]
    assert set(rows[0]) == {"target", "layer", "accuracy", "dev_accuracy", "control", "selectivity", "majority",
                            "type_only"}
    assert rows[1]["selectivity"] == pytest.approx(rows[1]["accuracy"] - rows[1]["control"])


def test_dev_split_comes_from_training_groups_and_leaves_test_alone():
    """The layer a caller reports is chosen on dev rows: dev groups are training groups set aside,
    disjoint from test, and the test side is the split without a dev set."""
    states, labels, types, groups = encoded(n=1500)
    kw = dict(types=types, groups=groups, target="mid", seed=4)
    plain, with_dev = fit_probes(states, labels, **kw), fit_probes(states, labels, dev_fraction=0.25, **kw)
    assert plain.dev_accuracy is None and with_dev.dev_accuracy.shape == (2,)
    assert np.array_equal(plain.test_groups, with_dev.test_groups)  # the same test rows
    train, test = split_by_group(groups, 0.3, seed=4)
    _, to_dev = split_by_group(groups[train], 0.25, seed=4, stream="probe-dev-split")
    dev_groups = set(groups[train][to_dev])
    assert dev_groups and not dev_groups & set(with_dev.test_groups)
    assert with_dev.n_train < plain.n_train and with_dev.n_test == plain.n_test
    assert with_dev.best_dev_layer() == 1  # layer 1 encodes the label
    assert with_dev.test_correct.shape == (2, with_dev.n_test)
    assert np.allclose(with_dev.test_correct.mean(1), with_dev.accuracy)
    assert with_dev.type_only_correct.mean() == pytest.approx(with_dev.type_only)
    with pytest.raises(IclabError, match="dev split"):
        plain.best_dev_layer()


def test_layer_subset():
    states, labels, types, groups = encoded(n=800, L=3)
    r = fit_probes(states, labels, types=types, groups=groups, target="x", layers=[1])
    assert r.layers == [1] and r.accuracy.shape == (1,) and r.accuracy[0] > 0.9


def test_single_training_class_and_unseen_test_labels():
    states, _, types, groups = encoded(n=600)
    train, test = split_by_group(groups, 0.3, seed=0)  # the split fit_probes uses
    labels = np.zeros(len(groups), dtype=int)
    first_test_group = groups[test][0]
    labels[groups == first_test_group] = 9  # never seen in training: must count as errors
    r = fit_probes(states, labels, types=types, groups=groups, target="x")
    expected = np.mean(labels[test] == 0)
    assert r.n_classes == 1 and expected < 1.0
    assert np.allclose(r.accuracy, expected) and r.majority == pytest.approx(expected)


def test_bad_inputs_raise():
    states, labels, types, groups = encoded(n=200)
    kw = dict(types=types, groups=groups, target="x")
    with pytest.raises(IclabError, match="3-D"):
        fit_probes(states[:, 0], labels, **kw)
    with pytest.raises(IclabError, match="must match"):
        fit_probes(states, labels[:-1], **kw)
    with pytest.raises(IclabError, match="types"):
        fit_probes(states, labels, types=types[:5], groups=groups, target="x")
    with pytest.raises(IclabError, match="groups"):
        fit_probes(states, labels, types=types, groups=groups[:, None], target="x")
    with pytest.raises(IclabError, match="out of range"):
        fit_probes(states, labels, layers=[2], **kw)
    with pytest.raises(IclabError, match="test_fraction"):
        fit_probes(states, labels, test_fraction=1.0, **kw)
    with pytest.raises(IclabError, match="2 distinct groups"):
        fit_probes(states, labels, types=types, groups=np.zeros_like(groups), target="x")
    bad = states.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(IclabError, match="NaN"):
        fit_probes(bad, labels, **kw)


def test_type_only_baseline_reads_the_type_not_the_context():
    """Labels fixed by the type: the type-only guess is perfect; labels set by context: it is not."""
    rng = np.random.default_rng(0)
    n, d = 2000, 8
    types = rng.integers(0, 10, n)
    groups = np.arange(n) // 10
    states = rng.normal(size=(n, 1, d))
    by_type = fit_probes(states, types % 3, types=types, groups=groups, target="t", seed=0)
    assert by_type.type_only == 1.0
    context = rng.integers(0, 3, n)
    states[:, 0, 0] += 4 * context  # the label lives in the state, not in the type
    by_context = fit_probes(states, context, types=types, groups=groups, target="c", seed=0)
    assert by_context.type_only < 0.5 < by_context.accuracy[0]
