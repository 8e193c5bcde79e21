"""Checks of tests/numpy_reference.py against facts that do not come from it:
hand-computed numbers, the course's published outputs, scipy, einsum, identities."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import numpy_reference as R  # tests/numpy_reference.py (conftest puts tests/ on sys.path)
import pytest

# ------------------------------------------------------------------------------ conv


def test_conv_hand_computed_valid():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
    W = np.array([[1, 2], [3, 4]], dtype=np.float32).reshape(2, 2, 1, 1)
    Z = R.conv2d(x, W, np.array([1.0]))
    # 1*1+2*2+3*4+4*5 = 37, 2+6+15+24 = 47, 4+10+21+32 = 67, 5+12+24+36 = 77; plus b = 1
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z[0, :, :, 0], [[38, 48], [68, 78]])


def test_conv_hand_computed_pad_and_stride():
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 3, 3, 1)
    W = np.array([[1, 2], [3, 4]], dtype=np.float64).reshape(2, 2, 1, 1)
    Z = R.conv2d(x, W, None, stride=(2, 2), pad=((1, 1), (1, 1)))
    # floor((3 + 2 - 2) / 2) + 1 = 2. Windows of the zero-padded 5x5 image:
    # (0,0): only x[0,0]=1 under weight 4 -> 4;  (0,2): 2*3 + 3*4 = 18
    # (2,0): 4*2 + 7*4 = 36;                     (2,2): 5*1 + 6*2 + 8*3 + 9*4 = 77
    np.testing.assert_array_equal(Z[0, :, :, 0], [[4, 18], [36, 77]])


def test_conv_course_published_output_v1():
    # Course 4 week 1, "conv_forward" (older notebook): expected output
    np.random.seed(1)
    A_prev = np.random.randn(10, 4, 4, 3)
    W = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = R.conv2d(A_prev, W, b, stride=(2, 2), pad=((2, 2), (2, 2)))
    assert Z.shape == (10, 4, 4, 8)
    assert np.mean(Z) == pytest.approx(0.0489952035289, abs=1e-12)
    np.testing.assert_allclose(
        Z[3, 2, 1],
        [-0.61490741, -6.7439236, -2.55153897, 1.75698377,
         3.56208902, 0.53036437, 5.18531798, 8.75898442],
        atol=1e-8,
    )


def test_conv_course_published_output_v2():
    # Course 4 week 1, "conv_forward" (newer notebook): expected output
    np.random.seed(1)
    A_prev = np.random.randn(10, 5, 7, 4)
    W = np.random.randn(3, 3, 4, 8)
    b = np.random.randn(1, 1, 1, 8)
    Z = R.conv2d(A_prev, W, b, stride=2, pad=1)
    assert Z.shape == (10, 3, 4, 8)
    assert np.mean(Z) == pytest.approx(0.692360880758, abs=1e-12)
    np.testing.assert_allclose(
        Z[3, 2, 1],
        [-1.28912231, 2.27650251, 6.61941931, 0.95527176,
         8.25132576, 2.31329639, 13.00689405, 2.34576051],
        atol=1e-8,
    )


def test_conv_course_output_sizes():
    # The course's ConvNet example: 39x39x3 -f=3,s=1,10 filters-> 37x37x10
    # -f=5,s=2,20 filters-> 17x17x20 -f=5,s=2,40 filters-> 7x7x40
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 39, 39, 3))
    a = R.conv2d(a, rng.standard_normal((3, 3, 3, 10)), None)
    assert a.shape == (1, 37, 37, 10)
    a = R.conv2d(a, rng.standard_normal((5, 5, 10, 20)), None, stride=(2, 2))
    assert a.shape == (1, 17, 17, 20)
    a = R.conv2d(a, rng.standard_normal((5, 5, 20, 40)), None, stride=(2, 2))
    assert a.shape == (1, 7, 7, 40)
    # "same" with the course's p = (f - 1) / 2 keeps the size
    b = R.conv2d(rng.standard_normal((1, 6, 6, 1)), np.ones((3, 3, 1, 1)), None, pad=1)
    assert b.shape == (1, 6, 6, 1)


def _conv_by_einsum(x, W, b, stride, pad):
    """Independent conv: gather every patch with fancy indexing, then one einsum."""
    (t, bo), (lft, rgt) = pad
    xp = np.pad(x, ((0, 0), (t, bo), (lft, rgt), (0, 0)))
    f_h, f_w = W.shape[:2]
    s_h, s_w = stride
    h_out = (xp.shape[1] - f_h) // s_h + 1
    w_out = (xp.shape[2] - f_w) // s_w + 1
    rows = (np.arange(h_out) * s_h)[:, None] + np.arange(f_h)[None, :]  # (h_out, f_h)
    cols = (np.arange(w_out) * s_w)[:, None] + np.arange(f_w)[None, :]  # (w_out, f_w)
    patches = xp[:, rows[:, None, :, None], cols[None, :, None, :], :]  # m,ho,wo,fh,fw,c
    return np.einsum("mhwijc,ijco->mhwo", patches, W) + b


def _conv_by_scipy(x, W, b, stride, pad):
    signal = pytest.importorskip("scipy.signal")
    (t, bo), (lft, rgt) = pad
    xp = np.pad(x, ((0, 0), (t, bo), (lft, rgt), (0, 0)))
    out = []
    for i in range(x.shape[0]):
        chans = []
        for o in range(W.shape[3]):
            full = signal.correlate(xp[i], W[:, :, :, o], mode="valid")[:, :, 0]
            chans.append(full[:: stride[0], :: stride[1]] + b[o])
        out.append(np.stack(chans, axis=-1))
    return np.stack(out)


@pytest.mark.parametrize(
    "shape,kernel,stride,pad",
    [
        ((2, 7, 6, 3), (3, 3, 3, 4), (1, 1), ((0, 0), (0, 0))),
        ((2, 7, 6, 3), (3, 2, 3, 4), (2, 1), ((1, 1), (0, 2))),
        ((1, 5, 5, 2), (2, 2, 2, 3), (2, 2), ((0, 1), (0, 1))),  # XLA SAME for 5, f=2, s=2
        ((1, 8, 8, 1), (3, 3, 1, 2), (2, 2), ((0, 1), (0, 1))),  # XLA SAME for 8, f=3, s=2
    ],
)
def test_conv_matches_einsum_and_scipy(shape, kernel, stride, pad):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    W = rng.standard_normal(kernel).astype(np.float32)
    b = rng.standard_normal(kernel[3])
    Z = R.conv2d(x, W, b, stride=stride, pad=pad)
    x64, W64 = x.astype(np.float64), W.astype(np.float64)
    np.testing.assert_allclose(Z, _conv_by_einsum(x64, W64, b, stride, pad), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(Z, _conv_by_scipy(x64, W64, b, stride, pad), rtol=1e-12,
                               atol=1e-12)


def test_same_padding_helper():
    assert R.same_padding(5, 2, 2) == (0, 1)
    assert R.same_padding(8, 3, 2) == (0, 1)
    assert R.same_padding(7, 3, 1) == (1, 1)
    assert R.same_padding(4, 2, 2) == (0, 0)
    for n, f, s in [(5, 2, 2), (8, 3, 2), (7, 3, 1), (9, 4, 3)]:
        lo, hi = R.same_padding(n, f, s)
        assert R.output_size(n, f, s, lo, hi) == math.ceil(n / s)


# --------------------------------------------------------------------------- pooling


def test_pool_course_published_output_v1():
    # Course 4 week 1, "pool_forward" (older notebook): f=3, stride=2
    np.random.seed(1)
    A_prev = np.random.randn(2, 4, 4, 3)
    np.testing.assert_allclose(
        R.maxpool(A_prev, 3, 2)[:, 0, 0],
        [[1.74481176, 0.86540763, 1.13376944], [1.13162939, 1.51981682, 2.18557541]],
        atol=1e-8,
    )
    np.testing.assert_allclose(
        R.avgpool(A_prev, 3, 2)[:, 0, 0],
        [[0.02105773, -0.20328806, -0.40389855], [-0.22154621, 0.51716526, 0.48155844]],
        atol=1e-8,
    )


def test_pool_course_published_output_v2():
    # Course 4 week 1, "pool_forward" (newer notebook): f=3, stride=1, A[1, 1]
    np.random.seed(1)
    A_prev = np.random.randn(2, 5, 5, 3)
    A = R.maxpool(A_prev, (3, 3), (1, 1))
    assert A.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(
        A[1, 1],
        [[1.96710175, 0.84616065, 1.27375593],
         [1.96710175, 0.84616065, 1.23616403],
         [1.62765075, 1.12141771, 1.2245077]],
        atol=1e-8,
    )
    np.testing.assert_allclose(
        R.avgpool(A_prev, (3, 3), (1, 1))[1, 1],
        [[0.44497696, -0.00261695, -0.31040307],
         [0.50811474, -0.23493734, -0.23961183],
         [0.11872677, 0.17255229, -0.22112197]],
        atol=1e-8,
    )


def test_maxpool_hand_computed():
    x = np.array([[1, 3, 2, 1], [4, 6, 5, 0], [7, 2, 9, 8], [1, 1, 3, 4]], np.float32)
    A = R.maxpool(x.reshape(1, 4, 4, 1))
    np.testing.assert_array_equal(A[0, :, :, 0], [[6, 5], [7, 9]])


def test_maxpool_padding_never_wins():
    x = -1.0 - np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)  # all negative
    A = R.maxpool(x, f=(3, 3), stride=(1, 1), pad=((1, 1), (1, 1)))
    assert A.shape == (1, 4, 4, 1)
    assert np.all(A < 0)
    # each output is the max over the real cells of its window
    for i in range(4):
        for j in range(4):
            win = x[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, 0]
            assert A[0, i, j, 0] == win.max()
    # SAME-style asymmetric padding, also all-negative
    B = R.maxpool(x, f=(2, 2), stride=(2, 2), pad=((0, 1), (0, 1)))
    assert np.all(B < 0)


def test_avgpool_padding_averages_real_cells_only():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    # with one cell of padding all round and f=2, s=2, each window holds one real cell
    A = R.avgpool(x, f=(2, 2), stride=(2, 2), pad=((1, 1), (1, 1)))
    np.testing.assert_array_equal(A[0, :, :, 0], [[1, 2], [3, 4]])

    y = np.arange(1, 10, dtype=np.float64).reshape(1, 3, 3, 1)
    B = R.avgpool(y, f=(3, 3), stride=(1, 1), pad=((1, 1), (1, 1)))
    assert B[0, 0, 0, 0] == pytest.approx((1 + 2 + 4 + 5) / 4)  # corner: 4 real cells
    assert B[0, 0, 1, 0] == pytest.approx((1 + 2 + 3 + 4 + 5 + 6) / 6)  # edge: 6 cells
    assert B[0, 1, 1, 0] == pytest.approx(5.0)  # centre: all 9
    # asymmetric (SAME) padding on the bottom/right only
    C = R.avgpool(y, f=(2, 2), stride=(2, 2), pad=((0, 1), (0, 1)))
    np.testing.assert_allclose(C[0, :, :, 0], [[3.0, 4.5], [7.5, 9.0]])


def test_global_avgpool_and_dense():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    g = R.global_avgpool(x)
    assert g.shape == (3, 6)
    np.testing.assert_allclose(g[1, 2], np.sum(x[1, :, :, 2], dtype=np.float64) / 20)

    W = rng.standard_normal((4 * 5 * 6, 7))
    b = rng.standard_normal(7)
    y = R.dense(x, W, b)
    assert y.shape == (3, 7)
    # row-major flatten: element (h, w, c) sits at index (h * 5 + w) * 6 + c
    expect = np.zeros((3, 7))
    for i in range(3):
        for h in range(4):
            for w in range(5):
                for c in range(6):
                    expect[i] += float(x[i, h, w, c]) * W[(h * 5 + w) * 6 + c]
    np.testing.assert_allclose(y, expect + b, rtol=1e-12)


# ----------------------------------------------------------------------- activations


def test_activations_simple_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(R.relu(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(R.leaky_relu(x), [-0.02, -0.005, 0, 0.5, 2])
    np.testing.assert_allclose(R.leaky_relu(x, a=0.2), [-0.4, -0.1, 0, 0.5, 2])
    np.testing.assert_allclose(R.tanh(x), [math.tanh(v) for v in x.astype(float)])
    np.testing.assert_allclose(R.sigmoid(x), [1 / (1 + math.exp(-v)) for v in x.astype(float)],
                               rtol=1e-15)
    assert R.sigmoid(0.0) == 0.5


def test_sigmoid_stable():
    x = np.array([-1000.0, -50.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = R.sigmoid(x)
    assert np.all(np.isfinite(s))
    assert s[0] == 0.0 and s[3] == 1.0
    np.testing.assert_allclose(s + R.sigmoid(-x), 1.0)
    assert s[1] == pytest.approx(math.exp(-50) / (1 + math.exp(-50)), rel=1e-14)


def test_softmax_rows_sum_to_one_and_stable():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 4)) * 3
    s = R.softmax(z)
    np.testing.assert_allclose(s.sum(axis=-1), 1.0)
    e = np.exp(z)
    np.testing.assert_allclose(s, e / e.sum(axis=1, keepdims=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = R.softmax(np.array([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]]))
    np.testing.assert_allclose(big[0], R.softmax(np.array([0.0, 1.0, 2.0])))
    np.testing.assert_allclose(big[1], [0.0, 0.0, 1.0])
    # over the last axis of a 3-d array
    t = R.softmax(rng.standard_normal((2, 3, 4)))
    np.testing.assert_allclose(t.sum(axis=-1), 1.0)


# ------------------------------------------------------------------ batchnorm/dropout


def test_batchnorm_train_normalises_per_channel():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((8, 5, 5, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 10.0])
    x = x.astype(np.float32)
    y, _, _ = R.batchnorm_train(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=1e-3)  # eps pulls var below 1

    gamma, beta = np.array([2.0, 0.5, 1.0]), np.array([1.0, -1.0, 0.0])
    y2, _, _ = R.batchnorm_train(x, gamma, beta, np.zeros(3), np.ones(3), eps=0.0)
    np.testing.assert_allclose(y2.mean(axis=(0, 1, 2)), beta, atol=1e-10)
    np.testing.assert_allclose(y2.std(axis=(0, 1, 2)), gamma, rtol=1e-10)


def test_batchnorm_running_stats_and_eval():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 4)) * 2 + 1
    rm, rv = np.array([0.5, 0.0, 0.0, 1.0]), np.array([1.0, 2.0, 0.5, 1.0])
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    y, new_mean, new_var = R.batchnorm_train(x, gamma, beta, rm, rv, momentum=0.8)
    # biased variance: divide by m = 16
    mu = x.sum(axis=0) / 16
    var = ((x - mu) ** 2).sum(axis=0) / 16
    np.testing.assert_allclose(new_mean, 0.8 * rm + 0.2 * mu)
    np.testing.assert_allclose(new_var, 0.8 * rv + 0.2 * var)
    # eval with the batch's own statistics reproduces training mode
    np.testing.assert_allclose(R.batchnorm_eval(x, gamma, beta, mu, var), y, rtol=1e-12)
    # eval with running statistics is an affine map per channel
    ye = R.batchnorm_eval(x, gamma, beta, new_mean, new_var, eps=1e-5)
    np.testing.assert_allclose(ye, gamma * (x - new_mean) / np.sqrt(new_var + 1e-5) + beta)


def test_dropout_inverted():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    mask = np.array([[1, 0, 1, 0]])
    np.testing.assert_array_equal(R.dropout(a, mask, 0.5), [[2.0, 0.0, 6.0, 0.0]])
    rng = np.random.default_rng(6)
    big = rng.standard_normal((200, 500)) + 3
    m = rng.random(big.shape) < 0.8
    assert R.dropout(big, m, 0.8).mean() == pytest.approx(big.mean(), rel=0.01)


# ---------------------------------------------------------------------------- losses


def test_binary_cross_entropy_hand_and_nan():
    a = np.array([[0.9], [0.2], [0.6]])
    y = np.array([[1.0], [0.0], [1.0]])
    expect = -(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3
    assert R.binary_cross_entropy(a, y) == pytest.approx(expect, rel=1e-14)

    # multi-task rows with unknown (NaN) labels: left out, still divided by m = 2
    a2 = np.array([[0.9, 0.3, 0.7], [0.4, 0.5, 0.1]], np.float32)
    y2 = np.array([[1.0, np.nan, 0.0], [np.nan, 1.0, np.nan]], np.float32)
    a2f = a2.astype(np.float64)
    expect2 = -(math.log(a2f[0, 0]) + math.log(1 - a2f[0, 2]) + math.log(a2f[1, 1])) / 2
    assert R.binary_cross_entropy(a2, y2) == pytest.approx(expect2, rel=1e-14)
    # same as the bce over the known entries only, rescaled to divide by m
    known = ~np.isnan(y2)
    flat = R.binary_cross_entropy(a2[known].reshape(-1, 1), y2[known].reshape(-1, 1))
    assert R.binary_cross_entropy(a2, y2) == pytest.approx(flat * known.sum() / 2)
    # all-known multi-task equals the sum over tasks of the per-task bce
    y3 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    per_task = sum(R.binary_cross_entropy(a2[:, [j]], y3[:, [j]]) for j in range(3))
    assert R.binary_cross_entropy(a2, y3) == pytest.approx(per_task)


def test_cross_entropy_ids_and_one_hot():
    a = R.softmax(np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.0, 1.0, 1.0]]))
    ids = np.array([0, 1, 2])
    one_hot = np.eye(3)[ids]
    expect = -(math.log(a[0, 0]) + math.log(a[1, 1]) + math.log(a[2, 2])) / 3
    assert R.cross_entropy(a, ids) == pytest.approx(expect, rel=1e-14)
    assert R.cross_entropy(a, one_hot) == pytest.approx(expect, rel=1e-14)
    uniform = np.full((4, 5), 0.2)
    assert R.cross_entropy(uniform, np.array([0, 1, 2, 3])) == pytest.approx(math.log(5))


def test_mse_and_l2_cost():
    assert R.mse(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [0.0, 4.0]])) == (
        pytest.approx((0 + 4 + 9 + 0) / 4)
    )
    K1 = np.array([[1.0, 2.0], [3.0, 4.0]])  # ||K1||^2 = 30
    K2 = np.ones((3, 3, 1, 2))  # 18
    assert R.l2_cost([K1, K2], lam=0.5, m=10) == pytest.approx(0.5 / 20 * 48)


# ---------------------------------------------------------------------- initialisers


@pytest.mark.parametrize(
    "name,shape,std",
    [
        ("he", (3, 3, 16, 32), math.sqrt(2 / 144)),
        ("xavier", (3, 3, 16, 32), math.sqrt(1 / 144)),
        ("glorot", (3, 3, 16, 32), math.sqrt(2 / (144 + 288))),
        ("he", (400, 300), math.sqrt(2 / 400)),
        ("xavier", (400, 300), math.sqrt(1 / 400)),
        ("glorot", (400, 300), math.sqrt(2 / 700)),
        ("random", (400, 300), 0.01),
    ],
)
def test_initialiser_statistics(name, shape, std):
    w = R.INITIALIZERS[name](np.random.default_rng(7), shape)
    assert w.shape == shape
    assert abs(w.mean()) < 4 * std / math.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.03)


def test_zeros_and_fans():
    assert np.all(R.zeros(np.random.default_rng(0), (3, 4)) == 0)
    assert R.random(np.random.default_rng(0), (500, 500), scale=2.0).std() == pytest.approx(
        2.0, rel=0.01)
    assert R.fans((5, 5, 3, 8)) == (75, 200)
    assert R.fans((10, 4)) == (10, 4)


# ------------------------------------------------------------------------ optimisers


def _params_grads():
    params = {"W": np.array([[1.0, -2.0], [0.5, 0.0]]), "b": np.array([0.1, -0.1])}
    grads = {"W": np.array([[0.3, -0.02], [1e-3, -4.0]]), "b": np.array([-0.5, 0.25])}
    return params, grads


def test_gd_step():
    p, g = _params_grads()
    new = R.GD().step(p, g, 0.1)
    np.testing.assert_allclose(new["W"], p["W"] - 0.1 * g["W"])
    np.testing.assert_allclose(new["b"], [0.15, -0.125])
    np.testing.assert_array_equal(p["b"], [0.1, -0.1])  # inputs untouched


def test_momentum_two_steps():
    p, g = _params_grads()
    opt = R.Momentum(beta=0.9)
    p1 = opt.step(p, g, 0.1)
    np.testing.assert_allclose(p1["W"], p["W"] - 0.1 * 0.1 * g["W"])  # V1 = 0.1 dW
    p2 = opt.step(p1, g, 0.1)
    np.testing.assert_allclose(p2["W"], p1["W"] - 0.1 * 0.19 * g["W"])  # V2 = 0.19 dW


def test_rmsprop_first_step():
    p, g = _params_grads()
    new = R.RMSProp(beta=0.9, eps=0.0).step(p, g, 0.01)
    # S1 = 0.1 dW^2, so the step is lr * sign(dW) / sqrt(0.1)
    np.testing.assert_allclose(new["W"], p["W"] - 0.01 * np.sign(g["W"]) / math.sqrt(0.1))


def test_adam_first_step_is_lr_sign():
    p, g = _params_grads()
    lr = 1e-3
    new = R.Adam().step(p, g, lr)
    for k in p:
        np.testing.assert_allclose(new[k] - p[k], -lr * np.sign(g[k]), rtol=1e-4)


def test_adam_second_step_by_hand():
    p, g = _params_grads()
    g2 = {k: -0.5 * v for k, v in g.items()}
    opt = R.Adam(b1=0.9, b2=0.999, eps=1e-8)
    p1 = opt.step(p, g, 0.01)
    p2 = opt.step(p1, g2, 0.01)
    dW1, dW2 = g["W"], g2["W"]
    V = 0.9 * (0.1 * dW1) + 0.1 * dW2
    S = 0.999 * (0.001 * dW1**2) + 0.001 * dW2**2
    step = (V / (1 - 0.9**2)) / (np.sqrt(S / (1 - 0.999**2)) + 1e-8)
    np.testing.assert_allclose(p2["W"], p1["W"] - 0.01 * step, rtol=1e-12)
    assert opt.t == 2


def test_adamw_decay_is_decoupled_and_scaled_by_lr():
    p, g = _params_grads()
    lr, wd = 1e-2, 0.1
    new = R.AdamW(wd=wd).step(p, g, lr)
    adam = R.Adam().step(p, g, lr)
    for k in p:
        np.testing.assert_allclose(new[k], adam[k] - lr * wd * p[k], rtol=1e-12)
    # with zero gradients, only the decay acts: W <- (1 - lr wd) W
    zero = {k: np.zeros_like(v) for k, v in g.items()}
    only_decay = R.AdamW(wd=wd).step(p, zero, lr)
    np.testing.assert_allclose(only_decay["W"], (1 - lr * wd) * p["W"])


def test_make_optimizer():
    assert isinstance(R.make_optimizer("rmsprop", beta=0.5), R.RMSProp)
    assert R.make_optimizer("adamw", wd=0.2).wd == 0.2


# ------------------------------------------------------------------------- schedules


def test_schedules_first_values():
    for sched in (
        R.constant,
        functools.partial(R.inverse_time, decay=1.0),
        functools.partial(R.exponential, rate=0.5, every=3),
        R.inverse_sqrt,
        functools.partial(R.cosine, epochs=10),
    ):
        assert sched(0.1, 0) == pytest.approx(0.1)


def test_schedules_later_values():
    assert R.constant(0.3, 17) == 0.3
    assert R.inverse_time(0.2, 1, decay=1.0) == pytest.approx(0.1)
    assert R.inverse_time(0.2, 5, decay=1.0, every=2) == pytest.approx(0.2 / 3)
    assert R.exponential(1.0, 1, rate=0.5) == pytest.approx(0.5)
    assert R.exponential(1.0, 2, rate=0.5, every=3) == pytest.approx(1.0)
    assert R.exponential(1.0, 3, rate=0.5, every=3) == pytest.approx(0.5)
    assert R.exponential(1.0, 7) == pytest.approx(0.95**7)
    assert R.inverse_sqrt(1.0, 3) == pytest.approx(0.5)
    assert R.inverse_sqrt(1.0, 3, k=2) == pytest.approx(1.0)
    assert R.cosine(1.0, 5, 10) == pytest.approx(0.5)
    assert R.cosine(1.0, 10, 10) == pytest.approx(0.0, abs=1e-15)


# --------------------------------------------------------------- logistic regression


def _toy_data(m=200, n=4, seed=8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    w_true = np.array([[1.5], [-2.0], [0.5], [0.0]])[:n]
    Y = (X @ w_true + 0.3 + 0.5 * rng.standard_normal((m, 1)) > 0).astype(np.float64)
    return X, Y


def test_logistic_regression_gd_reduces_cost():
    X, Y = _toy_data()
    W, b, costs = R.logistic_regression_train(X, Y, optimizer="gd", lr=0.5, epochs=100)
    assert W.shape == (4, 1)
    assert isinstance(b, float)
    assert len(costs) == 100
    assert costs[0] == pytest.approx(math.log(2))  # W = 0, b = 0 -> a = 0.5 everywhere
    assert np.all(np.diff(costs) < 0)
    assert costs[-1] < 0.5 * costs[0]
    acc = np.mean((R.sigmoid(X @ W + b) > 0.5) == (Y > 0.5))
    assert acc > 0.85


def test_logistic_regression_first_gd_step_by_hand():
    X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -1.0]])
    Y = np.array([[1.0], [0.0], [1.0]])
    W, b, costs = R.logistic_regression_train(X, Y, optimizer="gd", lr=0.1, epochs=1)
    # at W = 0, b = 0: A = 0.5, A - Y = [-0.5, 0.5, -0.5]
    dW = X.T @ np.array([[-0.5], [0.5], [-0.5]]) / 3
    np.testing.assert_allclose(W, -0.1 * dW)
    assert b == pytest.approx(-0.1 * (-0.5 / 3))
    assert costs == [pytest.approx(math.log(2))]


@pytest.mark.parametrize("optimizer,lr", [("momentum", 0.5), ("rmsprop", 0.01), ("adam", 0.05),
                                          ("adamw", 0.05)])
def test_logistic_regression_other_optimisers_reduce_cost(optimizer, lr):
    X, Y = _toy_data()
    _, _, costs = R.logistic_regression_train(X, Y, optimizer=optimizer, lr=lr, epochs=80,
                                              l2=0.1)
    assert costs[-1] < 0.6 * costs[0]


def test_logistic_regression_schedule_and_l2():
    X, Y = _toy_data()
    sched = functools.partial(R.exponential, rate=0.0)  # lr at epoch 0, then 0
    W1, b1, _ = R.logistic_regression_train(X, Y, optimizer="gd", lr=0.5, epochs=1)
    W5, b5, costs = R.logistic_regression_train(X, Y, optimizer="gd", lr=0.5, epochs=5,
                                                schedule=sched)
    np.testing.assert_allclose(W5, W1)
    assert b5 == b1
    assert costs[1] == costs[4]
    # a strong L2 penalty gives smaller weights
    Wl, _, _ = R.logistic_regression_train(X, Y, optimizer="gd", lr=0.5, epochs=100, l2=50.0)
    Wn, _, _ = R.logistic_regression_train(X, Y, optimizer="gd", lr=0.5, epochs=100)
    assert np.linalg.norm(Wl) < np.linalg.norm(Wn)


# -------------------------------------------------------------------- gradient check


def test_grad_check_known_function():
    theta = np.array([[1.0, -2.0], [0.5, 3.0]])
    approx = R.grad_check(lambda t: np.sum(t**3), theta)
    assert approx.shape == theta.shape
    assert R.relative_difference(3 * theta**2, approx) < 1e-7
    assert R.relative_difference(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(
        math.sqrt(2) / 2)


def test_grad_check_logistic_regression():
    X, Y = _toy_data(m=50, seed=9)
    rng = np.random.default_rng(10)
    W = rng.standard_normal((4, 1)) * 0.5
    b = 0.2
    lam = 0.7

    def cost(theta):
        return R.logistic_regression_cost(X, Y, theta[:4].reshape(4, 1), theta[4], l2=lam)

    dW, db = R.logistic_regression_grads(X, Y, W, b, l2=lam)
    g = np.concatenate([dW.ravel(), [db]])
    approx = R.grad_check(cost, np.concatenate([W.ravel(), [b]]))
    assert R.relative_difference(g, approx) < 1e-7
    # a wrong gradient (L2 term dropped) is caught
    dW_bad, _ = R.logistic_regression_grads(X, Y, W, b, l2=0.0)
    assert R.relative_difference(np.concatenate([dW_bad.ravel(), [db]]), approx) > 1e-3
