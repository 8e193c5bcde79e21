"""Gradient checking, as the course teaches it: compare backprop with two-sided differences.

    netc gradcheck NET.net [--samples 200] [--batch 8] [--seed 0]

For a random sample of parameter entries theta_i (every entry when the net has fewer than
`samples`), the approximation is

    g_approx_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)

and the check reports the relative difference over the sampled entries

    difference = ||g - g_approx|| / (||g|| + ||g_approx||)

read as in the course: about 1e-7 or less, fine (the gradient is right); about 1e-5, look
closer (check each layer; it may be fine); about 1e-3 or more, likely a bug.

How the check is set up, and why:

- float64 throughout. With eps = 1e-7 the rounding error of float32 (about 1e-7 relative)
  would swamp the difference, so the net is compiled again with dtype float64 inside a
  `jax.enable_x64(True)` context; nothing outside that context is changed.
- J is the cost that training differentiates: `Model.loss` (the mean loss over the minibatch
  plus the L2 term of the spec's `l2` setting).
- Dropout is off (the course's advice: its random mask is not a function of the
  parameters). The net is rebuilt with every `dropout` as the identity.
- Batch normalisation is in training mode by default (`bn="train"`): it normalises with the
  minibatch's own mean and variance, which is deterministic, so the gradient through the
  batch statistics is checked too. `bn="inference"` uses the running statistics instead.
- Entries are drawn without replacement with numpy's default_rng(seed); the perturbed
  costs are evaluated in jitted, vmapped chunks.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np

FINE, LOOK_CLOSER = 1e-6, 1e-4
PASS_BELOW = 1e-6  # `netc gradcheck` exits 0 below this difference, 1 otherwise
_CHUNK = 64

HELP = """\
Check the net's gradients against two-sided finite differences (the course's gradient check).

Builds the net in float64, draws a random minibatch of --batch examples of the input shape
and random labels suited to its loss (class ids for softmax, 0/1 for sigmoid, normal values
for mse), and compares backprop with (J(theta + eps) - J(theta - eps)) / (2 eps) on --samples
parameter entries picked at random (all of them in a smaller net). Dropout is off; batch norm
uses the minibatch's statistics. Prints the relative difference
||g - g_approx|| / (||g|| + ||g_approx||), its reading (about 1e-7: fine; about 1e-5: look
closer; about 1e-3: likely a bug) and the worst entry of each layer. Exits 0 when the
difference is below 1e-6, else 1."""


def reading(difference: float) -> str:
    """The course's reading of a relative difference."""
    if not math.isfinite(difference):
        return "likely a bug (the difference is not finite)"
    if difference < FINE:
        return "fine (about 1e-7 or less: the gradient is right)"
    if difference < LOOK_CLOSER:
        return "look closer (about 1e-5: check each layer; it may be fine)"
    return "likely a bug (about 1e-3 or more)"


def relative_difference(g, g_approx) -> float:
    """||g - g_approx|| / (||g|| + ||g_approx||); 0 when both are zero."""
    g, g_approx = np.ravel(np.asarray(g, np.float64)), np.ravel(np.asarray(g_approx, np.float64))
    denominator = np.linalg.norm(g) + np.linalg.norm(g_approx)
    if denominator == 0:
        return 0.0
    return float(np.linalg.norm(g - g_approx) / denominator)


def _without_dropout(node):
    """The IR node with every dropout turned into the identity (keep = 1)."""
    if node is None:
        return None
    if node.kind == "dropout":
        return dataclasses.replace(node, attrs={**node.attrs, "keep": 1.0})
    if node.children:
        return dataclasses.replace(node, children=tuple(_without_dropout(c)
                                                        for c in node.children))
    return node


def float64_model(model_or_net):
    """A float64 Model of the same net with dropout off (call inside jax.enable_x64(True)).

    It is built directly, not through compile_net's cache, which is keyed by the spec text
    and would hand back the model with dropout."""
    import jax.numpy as jnp
    from netc.compiler.model import Model

    net = getattr(model_or_net, "net", model_or_net)
    net = dataclasses.replace(net, body=_without_dropout(net.body))
    return Model(net, dtype=jnp.float64)


def _entries(params):
    """[(layer, param, shape, offset)] in the order ravel_pytree flattens `params`."""
    import jax

    out, offset = [], 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [getattr(k, "key", getattr(k, "name", str(k))) for k in path]
        layer, pname = "/".join(map(str, keys[:-1])), str(keys[-1])
        out.append((layer, pname, tuple(np.shape(leaf)), offset))
        offset += int(np.size(leaf))
    return out


def gradcheck(model, x, y, *, samples: int = 200, eps: float = 1e-7, seed: int = 0,
              variables=None, bn: str = "train", loss_fn=None) -> dict:
    """Check backprop against two-sided differences, in float64. Returns a dict:

    difference   ||g - g_approx|| / (||g|| + ||g_approx||) over the sampled entries
    reading      the course's reading of it (fine / look closer / likely a bug)
    passed       difference < 1e-6
    checked, total, eps, cost, dtype
    layers       {layer name: {"difference", "checked", "worst": {param, index, grad, approx,
                 difference}}}, worst = the entry with the largest |g - g_approx|
    index, grad, approx   numpy arrays: the sampled entries of the flattened parameters
                 (jax.flatten_util.ravel_pytree order), backprop's and the two-sided values

    `model` is a netc Model (or a checked Net); it is rebuilt in float64 with dropout off.
    `variables` defaults to model.init(key(seed)) in float64; given ones are cast to float64.
    `bn`: "train" (minibatch statistics, the default) or "inference" (running statistics).
    `loss_fn(params) -> J` replaces the model's cost when given (tests use it to show that a
    wrong gradient is caught); the gradient is still jax.grad of it.
    """
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    if bn not in ("train", "inference"):
        raise ValueError(f"bn must be 'train' or 'inference', got {bn!r}")
    with jax.enable_x64(True):
        m64 = float64_model(model)
        if variables is None:
            variables = m64.init(jax.random.key(seed))
        variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        params, state = variables["params"], variables.get("state", {})
        x64 = jnp.asarray(x, jnp.float64)
        y64 = jnp.asarray(y) if np.issubdtype(np.asarray(y).dtype, np.integer) \
            else jnp.asarray(y, jnp.float64)
        train = bn == "train"

        theta, unravel = ravel_pytree(params)
        total = int(theta.size)
        if loss_fn is None:
            def cost(th):
                return m64.loss(unravel(th), state, x64, y64, None, train=train)[0]
        else:
            def cost(th):
                return loss_fn(unravel(th))

        j0, grad = jax.jit(jax.value_and_grad(cost))(theta)
        rng = np.random.default_rng(seed)
        if total <= samples:
            idx = np.arange(total)
        else:
            idx = np.sort(rng.choice(total, size=samples, replace=False))

        @jax.jit
        def two_sided(indices):
            def one(i):
                e = jnp.zeros_like(theta).at[i].set(eps)
                return (cost(theta + e) - cost(theta - e)) / (2 * eps)
            return jax.vmap(one)(indices)

        approx = np.concatenate([
            np.asarray(two_sided(jnp.asarray(_pad_chunk(idx[i:i + _CHUNK]))))[
                :len(idx[i:i + _CHUNK])] for i in range(0, len(idx), _CHUNK)]) \
            if len(idx) else np.zeros(0)
        g = np.asarray(grad)[idx]
        dtype = str(jnp.result_type(j0))
        j0 = float(j0)

    difference = relative_difference(g, approx)
    return {"difference": difference, "reading": reading(difference),
            "passed": bool(difference < PASS_BELOW), "checked": len(idx), "total": total,
            "eps": eps, "cost": j0, "dtype": dtype,
            "layers": _per_layer(params, idx, g, approx),
            "index": idx, "grad": g, "approx": approx}


def _pad_chunk(indices: np.ndarray) -> np.ndarray:
    """Pad a chunk to _CHUNK entries (repeating its first) so one compilation serves all."""
    if len(indices) == _CHUNK:
        return indices
    return np.concatenate([indices, np.full(_CHUNK - len(indices), indices[0])])


def _per_layer(params, idx, g, approx) -> dict:
    layers: dict = {}
    entries = _entries(params)
    offsets = np.array([e[3] for e in entries])
    owner = np.searchsorted(offsets, idx, side="right") - 1
    for k, (layer, pname, shape, offset) in enumerate(entries):
        mask = owner == k
        if not mask.any():
            continue
        gi, ai, flat = g[mask], approx[mask], idx[mask] - offset
        err = np.abs(gi - ai)
        w = int(np.argmax(err))
        denominator = abs(gi[w]) + abs(ai[w])
        worst = {"param": pname, "index": tuple(int(v) for v in np.unravel_index(flat[w], shape)),
                 "grad": float(gi[w]), "approx": float(ai[w]),
                 "difference": float(err[w] / denominator) if denominator else 0.0}
        info = layers.setdefault(layer, {"g": [], "a": [], "worst": worst})
        info["g"].append(gi)
        info["a"].append(ai)
        if err[w] > abs(info["worst"]["grad"] - info["worst"]["approx"]):
            info["worst"] = worst
    return {name: {"difference": relative_difference(np.concatenate(v["g"]),
                                                     np.concatenate(v["a"])),
                   "checked": int(sum(len(a) for a in v["g"])), "worst": v["worst"]}
            for name, v in layers.items()}


# ---- random data for the CLI --------------------------------------------------------------


def random_batch(model, batch: int, seed: int = 0):
    """(x, y): normal inputs of the net's input shape and labels suited to its loss."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *model.input_shape))
    out = model.output_shape
    if model.loss_name == "cross_entropy":
        y = rng.integers(0, out[-1], size=batch)
    elif model.loss_name == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(batch, *out)).astype(np.float64)
    else:
        y = rng.standard_normal((batch, *out))
    return x, y


def format_report(name: str, result: dict) -> str:
    lines = [f"gradient check of {name}: {result['checked']} of {result['total']} parameter "
             f"entries, eps={result['eps']:g}, {result['dtype']}, cost J={result['cost']:.6g}",
             f"relative difference {result['difference']:.3e}: {result['reading']}"]
    if result["dtype"] != "float64":
        lines.append(f"warning: the cost came back as {result['dtype']}, not float64; "
                     "rounding then swamps the two-sided differences")
    if result["layers"]:
        width = max(len(n) for n in result["layers"])
        lines.append(f"  {'layer':<{width}}  checked  difference  worst entry (backprop vs "
                     "two-sided)")
        for layer, info in result["layers"].items():
            w = info["worst"]
            where = f"{w['param']}[{','.join(map(str, w['index']))}]"
            lines.append(f"  {layer:<{width}}  {info['checked']:>7}  {info['difference']:.3e}"
                         f"   {where}: {w['grad']:.6g} vs {w['approx']:.6g}")
    return "\n".join(lines)


def cmd_gradcheck(args) -> int:
    """`netc gradcheck FILE [--samples N] [--batch M] [--seed S]`: 0 if fine, else 1."""
    from netc.compiler.model import Model

    from .specfile import load_net

    net = load_net(args.file)  # a SpecError propagates; the CLI prints it
    samples = int(getattr(args, "samples", None) or 200)
    batch = int(getattr(args, "batch", None) or 8)
    seed = int(getattr(args, "seed", None) or 0)
    model = Model(net)
    x, y = random_batch(model, batch, seed)
    result = gradcheck(model, x, y, samples=samples, seed=seed)
    print(format_report(net.name, result))
    sys.stdout.flush()
    return 0 if result["difference"] < PASS_BELOW else 1


__all__ = ["HELP", "cmd_gradcheck", "float64_model", "format_report", "gradcheck",
           "random_batch", "reading", "relative_difference"]
