"""Per-layer linear probes on frozen hidden states, with Hewitt & Liang's control task.

A probe that reads a property (a token's role, the intermediate value...) off layer l says
the property is *linearly decodable* there, but a high accuracy alone can just mean the probe
memorised which input token carries which label. Hewitt & Liang (2019) measure that with a
*control task*: every word type gets a random label, so only memorisation solves it.
Selectivity = accuracy - control accuracy is the part the representation itself explains.

Probe and control share everything (split, subsample, standardisation, C), so their
difference is the labels only. The split keeps whole documents / prompts on one side, so the
probe can't pass by recognising a prompt it saw in training. With `dev_fraction`, some training
groups become a dev split: a caller chooses its layer on dev accuracy and reports the test
accuracy at that layer, so the choice never sees the rows it is scored on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from iclab.runtime import IclabError
from iclab.runtime import make_rng


def _type_only_correct(types_tr: np.ndarray, y_tr: np.ndarray, types_te: np.ndarray, y_te: np.ndarray,
                       fallback) -> np.ndarray:
    """(n_test,) whether the token type alone predicts the label (its most frequent training label).
    With few types a linear probe memorises any type -> label map, so the control task is solved;
    a probe that beats *this* reads something the type does not determine, i.e. the context."""
    best = {}
    for t in np.unique(types_tr):
        v, c = np.unique(y_tr[types_tr == t], return_counts=True)
        best[t] = v[np.argmax(c)]
    guess = np.asarray([best.get(t, fallback) for t in types_te])
    return guess == y_te


@dataclass
class ProbeResult:
    """Held-out accuracies of one probing target, one entry per probed layer."""

    target: str  # e.g. "role"
    layers: list[int]  # layer indices probed (0 = embeddings output if given so by caller)
    accuracy: np.ndarray  # (L,) held-out accuracy of the probe per layer
    control: np.ndarray  # (L,) held-out accuracy on the control task per layer
    majority: float  # accuracy of predicting the most frequent training label on the test split
    type_only: float  # accuracy of the best guess from the input type alone (its most frequent training label)
    n_train: int
    n_test: int
    n_classes: int  # distinct labels among the training rows
    dev_accuracy: np.ndarray | None = None  # (L,) accuracy on the dev split (None without one)
    test_groups: np.ndarray | None = None  # (n_test,) group of each test row
    test_correct: np.ndarray | None = None  # (L, n_test) bool: the probe right on each test row
    type_only_correct: np.ndarray | None = None  # (n_test,) bool: the type-only guess right

    def best_dev_layer(self) -> int:
        """Index (into `layers`) of the layer with the best dev accuracy (ties: the lowest): the layer
        a caller reports, chosen without the test rows."""
        if self.dev_accuracy is None:
            raise IclabError("this probe has no dev split: fit it with dev_fraction > 0 to choose a layer")
        return int(np.argmax(self.dev_accuracy))

    @property
    def selectivity(self) -> np.ndarray:
        """(L,) accuracy - control: what the layer encodes beyond memorising input types."""
        return self.accuracy - self.control

    def rows(self) -> list[dict]:
        """Tidy rows (one per layer), ready for `pandas.DataFrame(result.rows())`."""
        sel = self.selectivity
        dev = self.dev_accuracy
        return [
            {
                "target": self.target,
                "layer": int(layer),
                "accuracy": float(self.accuracy[i]),
                "dev_accuracy": float(dev[i]) if dev is not None else float("nan"),
                "control": float(self.control[i]),
                "selectivity": float(sel[i]),
                "majority": float(self.majority),
                "type_only": float(self.type_only),
            }
            for i, layer in enumerate(self.layers)
        ]


def _check_1d(name: str, a: np.ndarray, n: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise IclabError(f"{name} must be 1-D with one entry per row, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise IclabError(f"{name} has {len(a)} rows but states has {n}: they must match")
    return a


def control_labels(types: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Hewitt & Liang control task: each word *type* (here: the input token id) gets a random label,
    drawn once per type from the empirical label distribution, so a probe can only solve it by memorising types."""
    types = _check_1d("types", types)
    labels = _check_1d("labels", labels, len(types))
    if len(types) == 0:
        raise IclabError("control_labels needs at least one row")
    values, counts = np.unique(labels, return_counts=True)
    uniq_types, inverse = np.unique(types, return_inverse=True)  # sorted: the draw is order-free
    rng = make_rng(seed, "probe-control")
    per_type = rng.choice(len(values), size=len(uniq_types), p=counts / counts.sum())  # (T,)
    return values[per_type[inverse]]  # (n,)


def split_by_group(groups: np.ndarray, test_fraction: float, seed: int,
                   stream: str = "probe-split") -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/test masks with whole groups (documents / prompts) on one side, so no prompt leaks.

    `test_fraction` is the fraction of *groups* sent to test (at least one, and at least one
    group stays in training); the draw is `make_rng(seed, stream)`.
    """
    groups = _check_1d("groups", groups)
    if not 0.0 < test_fraction < 1.0:
        raise IclabError(f"test_fraction must be in (0, 1), got {test_fraction}")
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise IclabError(f"a group split needs at least 2 distinct groups, got {len(uniq)}")
    n_test = min(max(1, round(test_fraction * len(uniq))), len(uniq) - 1)
    rng = make_rng(seed, stream)
    test_groups = rng.permutation(uniq)[:n_test]
    test = np.isin(groups, test_groups)
    return ~test, test


def _standardise(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Zero mean / unit variance with train statistics: lbfgs converges far faster, C means the same per layer."""
    mu = train.mean(axis=0)  # (d,)
    sd = train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)  # constant features (dead units) stay 0, no division by 0
    return (train - mu) / sd, [(x - mu) / sd for x in others]


def _fit(x_tr: np.ndarray, y_tr: np.ndarray, C: float, max_iter: int):
    """A multinomial logistic probe, as its predict function (training classes only, so test labels
    unseen in training are errors)."""
    from sklearn.exceptions import ConvergenceWarning  # here: scikit-learn takes a second to import
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y_tr)
    if len(classes) == 1:  # sklearn refuses a single class; the only sensible probe predicts it
        return lambda x: np.full(len(x), classes[0])
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    # The probe is a measurement, not a model we ship: an lbfgs run stopped at max_iter is still a
    # fine accuracy estimate, and the suite turns warnings into errors, so silence only this one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    return clf.predict


def fit_probes(
    states: np.ndarray,
    labels: np.ndarray,
    *,
    types: np.ndarray,
    groups: np.ndarray,
    target: str,
    layers: list[int] | None = None,
    seed: int = 0,
    test_fraction: float = 0.3,
    dev_fraction: float = 0.0,
    max_train: int = 4000,
    C: float = 1.0,
    max_iter: int = 400,
) -> ProbeResult:
    """states (n, L, d) float; labels (n,) ints (any ids); types (n,) token ids for the control task;
    groups (n,) document/prompt ids. Standardise features per layer (fit on train), multinomial
    LogisticRegression (lbfgs, max_iter ~ 300-500), subsample at most max_train training rows (seeded),
    labels unseen in training count as errors on test. The same split for probe and control.

    The split is `split_by_group(groups, test_fraction, seed)`; with `dev_fraction` > 0 that
    fraction of the training groups is held out as a dev split (`dev_accuracy`, for choosing a
    layer). The control labels are `control_labels(types, labels, seed)` over all rows (a type
    keeps its label across the split).
    """
    states = np.asarray(states)
    if states.ndim != 3:
        raise IclabError(f"states must be 3-D (rows, layers, width), got shape {states.shape}")
    n, L, _ = states.shape
    if n == 0:
        raise IclabError("states has no rows: nothing to probe")
    if not np.issubdtype(states.dtype, np.number) or np.issubdtype(states.dtype, np.complexfloating):
        raise IclabError(f"states must be a real numeric array, got dtype {states.dtype}")
    labels = _check_1d("labels", labels, n)
    types = _check_1d("types", types, n)
    groups = _check_1d("groups", groups, n)
    layers = list(range(L)) if layers is None else [int(layer) for layer in layers]
    if not layers:
        raise IclabError("layers is empty: give at least one layer index, or None for all")
    bad = [layer for layer in layers if not 0 <= layer < L]
    if bad:
        raise IclabError(f"layer indices {bad} out of range: states has {L} layers (0..{L - 1})")
    if max_train < 1:
        raise IclabError(f"max_train must be >= 1, got {max_train}")
    if not C > 0:
        raise IclabError(f"C must be > 0, got {C}")

    if not 0.0 <= dev_fraction < 1.0:
        raise IclabError(f"dev_fraction must be in [0, 1), got {dev_fraction}")

    train, test = split_by_group(groups, test_fraction, seed)
    dev = np.zeros_like(train)
    if dev_fraction > 0:  # whole training groups move to dev; the test side is the same as without
        _, to_dev = split_by_group(groups[train], dev_fraction, seed, stream="probe-dev-split")
        dev[np.flatnonzero(train)[to_dev]] = True
        train &= ~dev
    tr = np.flatnonzero(train)
    if len(tr) > max_train:  # cost of lbfgs grows with rows; a few thousand pin accuracy to ~1%
        tr = np.sort(make_rng(seed, "probe-subsample").choice(tr, size=max_train, replace=False))
    te, dv = np.flatnonzero(test), np.flatnonzero(dev)
    ctrl = control_labels(types, labels, seed)  # (n,)

    y_tr, y_te = labels[tr], labels[te]
    values, counts = np.unique(y_tr, return_counts=True)
    majority = float(np.mean(y_te == values[np.argmax(counts)]))  # ties: smallest label
    type_only = _type_only_correct(types[tr], y_tr, types[te], y_te, values[np.argmax(counts)])  # (n_test,)

    right = np.zeros((len(layers), len(te)), dtype=bool)
    dev_acc = np.zeros(len(layers))
    con = np.zeros(len(layers))
    # lbfgs on a few thousand rows is many small BLAS calls: one BLAS thread is faster, and a
    # multi-threaded BLAS on a busy machine stalls tens of times over (measured on 2 cores)
    with threadpool_limits(1):
        for i, layer in enumerate(layers):
            x_tr, (x_te, x_dv) = _standardise(states[tr, layer].astype(np.float64),
                                              states[te, layer].astype(np.float64),
                                              states[dv, layer].astype(np.float64))  # (n_train|n_test|n_dev, d)
            if not (np.isfinite(x_tr).all() and np.isfinite(x_te).all()):
                raise IclabError(f"states at layer {layer} contain NaN or inf: check the model's forward pass")
            clf = _fit(x_tr, y_tr, C, max_iter)
            right[i] = clf(x_te) == y_te
            dev_acc[i] = float(np.mean(clf(x_dv) == labels[dv])) if len(dv) else np.nan
            con[i] = float(np.mean(_fit(x_tr, ctrl[tr], C, max_iter)(x_te) == ctrl[te]))

    return ProbeResult(
        target=target,
        layers=layers,
        accuracy=right.mean(1),
        control=con,
        majority=majority,
        type_only=float(type_only.mean()) if len(te) else 0.0,
        n_train=len(tr),
        n_test=len(te),
        n_classes=len(values),
        dev_accuracy=dev_acc if len(dv) else None,
        test_groups=groups[te],
        test_correct=right,
        type_only_correct=type_only,
    )
