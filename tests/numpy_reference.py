"""Plain numpy reference for the formulas of Andrew Ng's deep learning course.

This module is deliberately independent of the project: it imports neither jax nor
anything from ``netc``. It is written for reading, not for speed: loops appear where
the course writes loops, and every function follows one formula from the course.
The JAX implementation is tested against it.

Conventions
-----------
* batch first, channels last: images are ``(m, H, W, C)``;
* conv kernels are ``(f_h, f_w, c_in, c_out)`` (HWIO);
* fully connected kernels are ``(n_in, n_out)`` and ``y = x @ W + b``;
* padding is explicit, ``((top, bottom), (left, right))``, so that both the course's
  symmetric ``p`` and XLA's possibly asymmetric "SAME" can be written
  (see :func:`same_padding`);
* all arithmetic is float64; float32 inputs are accepted and promoted.
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------- helpers


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _pair(v):
    """2 -> (2, 2); (2, 3) -> (2, 3)."""
    if np.isscalar(v):
        return (int(v), int(v))
    a, b = v
    return (int(a), int(b))


def _pad_pairs(pad):
    """p -> ((p, p), (p, p)); ((t, b), (l, r)) is returned as is."""
    if np.isscalar(pad):
        p = int(pad)
        return ((p, p), (p, p))
    (top, bottom), (left, right) = pad
    return ((int(top), int(bottom)), (int(left), int(right)))


def output_size(n, f, s, p_lo, p_hi):
    """The course's output size along one axis: floor((n + p_lo + p_hi - f) / s) + 1."""
    return (n + p_lo + p_hi - f) // s + 1


def same_padding(n, f, s):
    """XLA "SAME" padding along one axis: output ceil(n / s); low = total // 2."""
    out = -(-n // s)
    total = max((out - 1) * s + f - n, 0)
    lo = total // 2
    return (lo, total - lo)


def _pad_image(x, pad, value):
    """Pad the H and W axes of an (m, H, W, C) array with a constant."""
    (top, bottom), (left, right) = pad
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="constant",
                  constant_values=value)


# ----------------------------------------------------------------- conv and pooling


def conv2d(x, W, b=None, stride=(1, 1), pad=((0, 0), (0, 0))):
    """The course's ``conv_forward``: an explicit sliding window.

    x: (m, H, W, c_in); W: (f_h, f_w, c_in, c_out); b: (c_out,) (or (1, 1, 1, c_out))
    or None. Returns (m, H_out, W_out, c_out) with
    ``H_out = floor((H + p_top + p_bottom - f_h) / s_h) + 1`` (likewise W_out).
    """
    x = _f64(x)
    W = _f64(W)
    s_h, s_w = _pair(stride)
    pad = _pad_pairs(pad)
    m, n_h, n_w, c_in = x.shape
    f_h, f_w, c_in_w, c_out = W.shape
    assert c_in == c_in_w, (x.shape, W.shape)
    bias = np.zeros(c_out) if b is None else _f64(b).reshape(-1)

    h_out = output_size(n_h, f_h, s_h, *pad[0])
    w_out = output_size(n_w, f_w, s_w, *pad[1])
    x_pad = _pad_image(x, pad, 0.0)

    Z = np.zeros((m, h_out, w_out, c_out))
    for i in range(m):
        a_prev_pad = x_pad[i]
        for h in range(h_out):
            vert_start = h * s_h
            vert_end = vert_start + f_h
            for w in range(w_out):
                horiz_start = w * s_w
                horiz_end = horiz_start + f_w
                a_slice = a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :]
                for c in range(c_out):
                    Z[i, h, w, c] = np.sum(a_slice * W[:, :, :, c]) + bias[c]
    return Z


def grouped_conv2d(x, W, b=None, stride=(1, 1), pad=((0, 0), (0, 0)), groups=1):
    """A grouped convolution: the input channels and the filters are split into `groups`
    equal parts, and filter part g convolves input part g alone (:func:`conv2d` per group).

    W: (f_h, f_w, c_in / groups, c_out). A depthwise convolution with depth multiplier m is
    groups = c_in with W (f_h, f_w, 1, c_in * m): output channel i*m + q sees input channel i.
    """
    x = _f64(x)
    c_in, c_out = x.shape[-1], W.shape[-1]
    assert c_in % groups == 0 and c_out % groups == 0, (c_in, c_out, groups)
    k, n = c_in // groups, c_out // groups
    parts = [conv2d(x[..., g * k:(g + 1) * k], W[..., g * n:(g + 1) * n], None, stride, pad)
             for g in range(groups)]
    y = np.concatenate(parts, axis=-1)
    return y if b is None else y + _f64(b).reshape(-1)


def _pool(x, f, stride, pad, pad_value, reduce_window):
    x = _f64(x)
    f_h, f_w = _pair(f)
    s_h, s_w = _pair(stride)
    pad = _pad_pairs(pad)
    m, n_h, n_w, n_c = x.shape
    h_out = output_size(n_h, f_h, s_h, *pad[0])
    w_out = output_size(n_w, f_w, s_w, *pad[1])
    x_pad = _pad_image(x, pad, pad_value)
    # real[i, j] is 1 for a cell of the original image, 0 for a padded cell
    real = _pad_image(np.ones((1, n_h, n_w, 1)), pad, 0.0)[0, :, :, 0]

    A = np.zeros((m, h_out, w_out, n_c))
    for i in range(m):
        for h in range(h_out):
            vs = h * s_h
            for w in range(w_out):
                hs = w * s_w
                real_slice = real[vs:vs + f_h, hs:hs + f_w]
                for c in range(n_c):
                    a_slice = x_pad[i, vs:vs + f_h, hs:hs + f_w, c]
                    A[i, h, w, c] = reduce_window(a_slice, real_slice)
    return A


def maxpool(x, f=(2, 2), stride=(2, 2), pad=((0, 0), (0, 0))):
    """Max pooling; padded cells hold -inf so that padding never wins."""
    return _pool(x, f, stride, pad, -np.inf, lambda a, real: np.max(a))


def avgpool(x, f=(2, 2), stride=(2, 2), pad=((0, 0), (0, 0))):
    """Average pooling over the real (non-padded) cells of each window only."""
    return _pool(x, f, stride, pad, 0.0, lambda a, real: np.sum(a * real) / np.sum(real))


def global_avgpool(x):
    """Mean over H and W: (m, H, W, C) -> (m, C)."""
    return _f64(x).mean(axis=(1, 2))


def dense(x, W, b=None):
    """Fully connected layer: flatten row-major to (m, n_in), then x @ W + b."""
    x = _f64(x)
    x = x.reshape(x.shape[0], -1)
    y = x @ _f64(W)
    if b is not None:
        y = y + _f64(b).reshape(-1)
    return y


# ----------------------------------------------------------------------- activations


def relu(x):
    return np.maximum(_f64(x), 0.0)


def relu6(x):
    return np.minimum(np.maximum(_f64(x), 0.0), 6.0)


def leaky_relu(x, a=0.01):
    x = _f64(x)
    return np.where(x > 0, x, a * x)


def tanh(x):
    return np.tanh(_f64(x))


def elu(x, a=1.0):
    """x for x > 0, a (e^x - 1) otherwise."""
    x = _f64(x)
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))


def gelu_tanh(x):
    """The tanh approximation of GELU (jax.nn.gelu's and flax's default)."""
    x = _f64(x)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def silu(x):
    """x * sigmoid(x) (also called swish)."""
    return _f64(x) * sigmoid(x)


def sigmoid(x):
    """1 / (1 + e^-x), written so that no exp ever overflows.

    For x >= 0: 1 / (1 + e^-x). For x < 0: e^x / (1 + e^x). Both use e^-|x| <= 1.
    """
    x = _f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(x):
    """Softmax over the last axis; the row max is subtracted first (same result, no overflow)."""
    x = _f64(x)
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


# -------------------------------------------------------------- batch norm, dropout


def batchnorm_train(x, gamma, beta, running_mean, running_var, momentum=0.9, eps=1e-5):
    """Batch norm in training mode -> (y, new_running_mean, new_running_var).

    Statistics are taken over every axis but the last (channels):
        mu = mean(x), var = mean((x - mu)^2)          (biased: divide by the count)
        x_hat = (x - mu) / sqrt(var + eps);  y = gamma * x_hat + beta
        running = momentum * running + (1 - momentum) * batch_statistic
    The running variance is updated with the *biased* batch variance (as flax's
    BatchNorm does; PyTorch would use the unbiased one).
    """
    x = _f64(x)
    axes = tuple(range(x.ndim - 1))
    mu = np.mean(x, axis=axes)
    var = np.mean((x - mu) ** 2, axis=axes)
    x_hat = (x - mu) / np.sqrt(var + eps)
    y = _f64(gamma) * x_hat + _f64(beta)
    new_mean = momentum * _f64(running_mean) + (1 - momentum) * mu
    new_var = momentum * _f64(running_var) + (1 - momentum) * var
    return y, new_mean, new_var


def batchnorm_eval(x, gamma, beta, mean, var, eps=1e-5):
    """Batch norm at test time, with the stored (running) mean and variance."""
    x_hat = (_f64(x) - _f64(mean)) / np.sqrt(_f64(var) + eps)
    return _f64(gamma) * x_hat + _f64(beta)


def dropout(a, mask, keep):
    """Inverted dropout: a * mask / keep_prob (mask of 0/1 given by the caller)."""
    return _f64(a) * _f64(mask) / keep


# ---------------------------------------------------------------------------- losses


def binary_cross_entropy(a, y):
    """-(1/m) * sum[y log a + (1 - y) log(1 - a)], m = number of examples (rows).

    Entries of y that are NaN (unknown labels in multi-task rows) are left out of
    the sum; the sum is still divided by m. No clipping: a must lie in (0, 1).
    """
    a = _f64(a)
    y = _f64(y)
    m = y.shape[0]
    known = ~np.isnan(y)
    a_k = a[known]
    y_k = y[known]
    return -np.sum(y_k * np.log(a_k) + (1 - y_k) * np.log(1 - a_k)) / m


def cross_entropy(a, y):
    """-(1/m) sum_i sum_j y_ij log a_ij, with y one-hot (m, k) or class ids (m,)."""
    a = _f64(a)
    y = np.asarray(y)
    m = a.shape[0]
    if y.ndim == 1:
        total = 0.0
        for i in range(m):
            total += math.log(a[i, int(y[i])])
        return -total / m
    return -np.sum(_f64(y) * np.log(a)) / m


def mse(a, y):
    """Mean of (a - y)^2 over all elements."""
    return np.mean((_f64(a) - _f64(y)) ** 2)


def l2_cost(kernels, lam, m):
    """(lambda / (2 m)) * sum over kernels of the squared Frobenius norm."""
    return lam / (2 * m) * sum(np.sum(_f64(K) ** 2) for K in kernels)


# ---------------------------------------------------------------------- initialisers


def fans(shape):
    """(fan_in, fan_out): dense (n_in, n_out); conv (f_h, f_w, c_in, c_out)."""
    shape = tuple(shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        f_h, f_w, c_in, c_out = shape
        return f_h * f_w * c_in, f_h * f_w * c_out
    raise ValueError(f"no fan rule for shape {shape}")


def he(rng, shape):
    fan_in, _ = fans(shape)
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


def xavier(rng, shape):
    fan_in, _ = fans(shape)
    return rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)


def glorot(rng, shape):
    fan_in, fan_out = fans(shape)
    return rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))


def random(rng, shape, scale=0.01):
    return rng.standard_normal(shape) * scale


def zeros(rng, shape):
    return np.zeros(shape)


INITIALIZERS = {"he": he, "xavier": xavier, "glorot": glorot, "random": random, "zeros": zeros}


# ------------------------------------------------------------------------ optimisers
#
# Each optimiser keeps its own state (V, S, t) per parameter name.
#     opt = Adam(); params = opt.step(params, grads, lr)
# step() returns a new dict and does not modify the arrays passed in.
# t counts steps from 1.


class GD:
    """W -= lr * dW"""

    def __init__(self):
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        return {k: _f64(params[k]) - lr * _f64(grads[k]) for k in params}


class Momentum:
    """V = beta V + (1 - beta) dW;  W -= lr V   (no bias correction)"""

    def __init__(self, beta=0.9):
        self.beta = beta
        self.V = {}
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        new = {}
        for k in params:
            dW = _f64(grads[k])
            V = self.V.get(k, np.zeros_like(dW))
            V = self.beta * V + (1 - self.beta) * dW
            self.V[k] = V
            new[k] = _f64(params[k]) - lr * V
        return new


class RMSProp:
    """S = beta S + (1 - beta) dW^2;  W -= lr dW / (sqrt(S) + eps)"""

    def __init__(self, beta=0.9, eps=1e-8):
        self.beta = beta
        self.eps = eps
        self.S = {}
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        new = {}
        for k in params:
            dW = _f64(grads[k])
            S = self.S.get(k, np.zeros_like(dW))
            S = self.beta * S + (1 - self.beta) * dW**2
            self.S[k] = S
            new[k] = _f64(params[k]) - lr * dW / (np.sqrt(S) + self.eps)
        return new


class Adam:
    """V = b1 V + (1-b1) dW;  S = b2 S + (1-b2) dW^2
    V_c = V / (1 - b1^t);  S_c = S / (1 - b2^t);  W -= lr V_c / (sqrt(S_c) + eps)
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8):
        self.b1 = b1
        self.b2 = b2
        self.eps = eps
        self.V = {}
        self.S = {}
        self.t = 0

    def direction(self, params, grads):
        """Advance t, V, S and return V_c / (sqrt(S_c) + eps) per parameter."""
        self.t += 1
        t = self.t
        out = {}
        for k in params:
            dW = _f64(grads[k])
            V = self.V.get(k, np.zeros_like(dW))
            S = self.S.get(k, np.zeros_like(dW))
            V = self.b1 * V + (1 - self.b1) * dW
            S = self.b2 * S + (1 - self.b2) * dW**2
            self.V[k] = V
            self.S[k] = S
            V_c = V / (1 - self.b1**t)
            S_c = S / (1 - self.b2**t)
            out[k] = V_c / (np.sqrt(S_c) + self.eps)
        return out

    def step(self, params, grads, lr):
        d = self.direction(params, grads)
        return {k: _f64(params[k]) - lr * d[k] for k in params}


class AdamW(Adam):
    """Adam plus decoupled weight decay, as optax.adamw:
        W_new = W - lr * (V_c / (sqrt(S_c) + eps) + wd * W)
    i.e. the decay uses the parameter from before this step and is scaled by lr.
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
        super().__init__(b1=b1, b2=b2, eps=eps)
        self.wd = wd

    def step(self, params, grads, lr):
        d = self.direction(params, grads)
        new = {}
        for k in params:
            W = _f64(params[k])
            new[k] = W - lr * d[k] - lr * self.wd * W
        return new


OPTIMIZERS = {"gd": GD, "momentum": Momentum, "rmsprop": RMSProp, "adam": Adam, "adamw": AdamW}


def make_optimizer(name, **kwargs):
    """make_optimizer("adam", b1=0.9) -> Adam(b1=0.9)."""
    return OPTIMIZERS[name](**kwargs)


# ------------------------------------------------------------------------- schedules
# e is the epoch index, counting from 0; epoch 0 always runs at lr.


def constant(lr, e):
    return lr


def inverse_time(lr, e, decay, every=1):
    """lr / (1 + decay * floor(e / every))  (the course's 1/(1 + decay_rate * epoch))."""
    return lr / (1 + decay * math.floor(e / every))


def exponential(lr, e, rate=0.95, every=1):
    """lr * rate ** floor(e / every)"""
    return lr * rate ** math.floor(e / every)


def inverse_sqrt(lr, e, k=1):
    """lr * k / sqrt(e + 1)  (the course's k / sqrt(epoch), shifted so epoch 0 is lr * k)."""
    return lr * k / math.sqrt(e + 1)


def cosine(lr, e, epochs):
    """lr * 0.5 * (1 + cos(pi * e / epochs))"""
    return lr * 0.5 * (1 + math.cos(math.pi * e / epochs))


SCHEDULES = {
    "constant": constant,
    "inverse_time": inverse_time,
    "exponential": exponential,
    "inverse_sqrt": inverse_sqrt,
    "cosine": cosine,
}


# --------------------------------------------------------------- logistic regression


def logistic_regression_cost(X, Y, W, b, l2=0.0):
    """bce(sigmoid(X W + b), Y) + (l2 / (2 m)) ||W||^2."""
    m = X.shape[0]
    A = sigmoid(_f64(X) @ W + b)
    return binary_cross_entropy(A, Y) + l2_cost([W], l2, m)


def logistic_regression_grads(X, Y, W, b, l2=0.0):
    """dW = X^T (A - Y) / m + (l2 / m) W;  db = mean(A - Y)."""
    X = _f64(X)
    Y = _f64(Y)
    m = X.shape[0]
    A = sigmoid(X @ W + b)
    dZ = A - Y
    dW = X.T @ dZ / m + (l2 / m) * W
    db = np.sum(dZ) / m
    return dW, db


def logistic_regression_train(X, Y, *, optimizer, lr, epochs, l2=0.0, schedule=None,
                              **opt_kwargs):
    """The course's logistic regression, full batch, one gradient step per epoch.

    X: (m, n); Y: (m, 1). Starts from W = zeros((n, 1)), b = 0.
    optimizer: a name in OPTIMIZERS ("gd", "momentum", "rmsprop", "adam", "adamw");
    opt_kwargs go to its constructor. schedule: None (constant) or a callable
    ``schedule(lr, e) -> lr_e``, e.g. ``functools.partial(exponential, rate=0.9)``.
    costs[e] is the cost at the parameters used in epoch e (before its step).
    Returns (W, b, costs) with W (n, 1), b a float and costs a list of floats.
    """
    X = _f64(X)
    Y = _f64(Y).reshape(-1, 1)
    n = X.shape[1]
    params = {"W": np.zeros((n, 1)), "b": np.zeros(())}
    opt = make_optimizer(optimizer, **opt_kwargs)
    schedule = constant if schedule is None else schedule
    costs = []
    for e in range(epochs):
        W, b = params["W"], params["b"]
        costs.append(float(logistic_regression_cost(X, Y, W, b, l2)))
        dW, db = logistic_regression_grads(X, Y, W, b, l2)
        params = opt.step(params, {"W": dW, "b": np.asarray(db)}, schedule(lr, e))
    return params["W"], float(params["b"]), costs


# ------------------------------------------------------------------- gradient check


def grad_check(f, theta, eps=1e-7):
    """Two-sided differences: g[i] = (f(theta + eps e_i) - f(theta - eps e_i)) / (2 eps).

    theta may have any shape; the result has the same shape.
    """
    theta = _f64(theta).copy()
    grad_approx = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        plus = theta.copy()
        plus[idx] += eps
        minus = theta.copy()
        minus[idx] -= eps
        grad_approx[idx] = (f(plus) - f(minus)) / (2 * eps)
    return grad_approx


def relative_difference(g, g_approx):
    """||g - g_approx|| / (||g|| + ||g_approx||)"""
    g = _f64(g).ravel()
    g_approx = _f64(g_approx).ravel()
    return np.linalg.norm(g - g_approx) / (np.linalg.norm(g) + np.linalg.norm(g_approx))
