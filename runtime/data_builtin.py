"""The built-in data sets: moons, circles, flower (the course's planar data), digits.

Numpy only; sklearn is not imported for moons and circles (its import costs more than
training the course's moons model) nor for digits when its bundled table is found.
"""

from __future__ import annotations

import difflib
import pathlib

import numpy as np

from .data_base import DataError, check_options, float_option, int_option

__all__ = ["BUILTINS", "load_builtin"]

BUILTINS = ("moons", "circles", "flower", "digits")


def _two_curves(outer: tuple[np.ndarray, np.ndarray], inner: tuple[np.ndarray, np.ndarray],
                noise: float, gen: np.random.RandomState):
    """The tail shared by sklearn's make_moons and make_circles (shuffle=True), step for step
    so that the numbers are bit-identical: stack the two curves, shuffle, add noise."""
    x = np.vstack([np.append(outer[0], inner[0]), np.append(outer[1], inner[1])]).T
    y = np.hstack([np.zeros(len(outer[0]), dtype=np.intp), np.ones(len(inner[0]), dtype=np.intp)])
    order = np.arange(len(y))
    gen.shuffle(order)
    x, y = x[order], y[order]
    x += gen.normal(scale=noise, size=x.shape)
    return {"x": x.astype(np.float32), "y": y.astype(np.float32).reshape(-1, 1)}


# moons and circles are sklearn's make_moons / make_circles, re-stated in numpy: importing
# sklearn (and scipy under it) costs ~1-2 s, more than training the course's moons model.
# tests/test_data.py asserts bit-identity with sklearn.


def _moons(options: dict, seed: int) -> dict[str, np.ndarray]:
    """sklearn's two interleaving half circles; y is (m, 1) float32 for a sigmoid output."""
    check_options("built-in data set 'moons'", options, ("n", "noise", "seed"))
    n = int_option(options, "n", 300, minimum=2)
    noise = float_option(options, "noise", 0.2)
    gen = np.random.RandomState(int_option(options, "seed", seed))
    n_out = n // 2
    n_in = n - n_out
    outer = (np.cos(np.linspace(0, np.pi, n_out)), np.sin(np.linspace(0, np.pi, n_out)))
    inner = (1 - np.cos(np.linspace(0, np.pi, n_in)),
             1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5)
    return _two_curves(outer, inner, noise, gen)


def _circles(options: dict, seed: int) -> dict[str, np.ndarray]:
    """sklearn's two concentric circles; y is (m, 1) float32 for a sigmoid output."""
    check_options("built-in data set 'circles'", options, ("n", "noise", "factor", "seed"))
    n = int_option(options, "n", 300, minimum=2)
    noise = float_option(options, "noise", 0.05)
    factor = float_option(options, "factor", 0.5)
    if factor >= 1:
        raise DataError(f"option factor={factor:g} must be below 1 (inner/outer circle ratio)")
    gen = np.random.RandomState(int_option(options, "seed", seed))
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    outer = (np.cos(t_out), np.sin(t_out))
    inner = (np.cos(t_in) * factor, np.sin(t_in) * factor)
    return _two_curves(outer, inner, noise, gen)


def _flower(options: dict) -> dict[str, np.ndarray]:
    """The "planar" flower data set of Andrew Ng's deep learning course.

    Same numbers as the course's ``load_planar_dataset()`` (which seeds the global numpy
    generator with 1), but drawn from a local ``RandomState`` and with rows as examples.
    An odd ``n`` is rounded down to an even count (half the points per class).
    """
    check_options("built-in data set 'flower'", options, ("n", "petals", "seed"))
    m = int_option(options, "n", 400, minimum=2)
    petals = float_option(options, "petals", 4.0)
    rng = np.random.RandomState(int_option(options, "seed", 1))
    half = m // 2
    x = np.zeros((2 * half, 2))
    y = np.zeros((2 * half, 1), dtype=np.uint8)
    for j in range(2):
        ix = range(half * j, half * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, half) + rng.randn(half) * 0.2
        r = petals * np.sin(4 * t) + rng.randn(half) * 0.2
        x[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = j
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def _digits(options: dict) -> dict[str, np.ndarray]:
    """sklearn's bundled 8x8 handwritten digits as (1797, 8, 8, 1) images in [0, 1]."""
    check_options("built-in data set 'digits'", options, ())
    table = _sklearn_data_file("digits.csv.gz")
    if table is not None:  # what load_digits reads, without importing sklearn (~1 s)
        data = np.loadtxt(table, delimiter=",")
        images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, target = digits.images, digits.target
    x = (images / 16.0).astype(np.float32)[..., np.newaxis]
    return {"x": x, "y": target.astype(np.int32)}


def _sklearn_data_file(name: str) -> pathlib.Path | None:
    """A data file bundled with scikit-learn (sklearn/datasets/data/NAME), found without
    importing the package; None when it is not there."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = pathlib.Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def load_builtin(name: str, options: dict, seed: int) -> dict[str, np.ndarray]:
    if name == "moons":
        return _moons(options, seed)
    if name == "circles":
        return _circles(options, seed)
    if name == "flower":
        return _flower(options)
    if name == "digits":
        return _digits(options)
    hint = difflib.get_close_matches(name, BUILTINS, n=1)
    suffix = f" (did you mean {hint[0]}?)" if hint else ""
    raise DataError(f"unknown data set '{name}'; built-in: {', '.join(BUILTINS)}{suffix}")

