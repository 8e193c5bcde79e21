"""A run's final figures are those of its trained variables: a numpy forward pass of the
saved model, in float64, over every split."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from conftest import moons_mlp, write_spec
from netc.compiler.check import check_source
from netc.runtime.run import load_data, load_run, train_run


def numpy_figures(params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """fc 4 -> relu -> sigmoid 1 with binary cross-entropy, in float64."""
    h = np.maximum(x @ params["fc_1"]["kernel"] + params["fc_1"]["bias"], 0.0)
    z = h @ params["sigmoid_1"]["kernel"] + params["sigmoid_1"]["bias"]
    p = 1.0 / (1.0 + np.exp(-z))
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    return {"loss": loss, "accuracy": float(np.mean((p > 0.5) == (y > 0.5)))}


@pytest.mark.parametrize("split", ["1 0 0", "0.7 0.2 0.1"])
def test_final_figures_are_the_trained_variables(tmp_path, split):
    text = moons_mlp("fc 4 -> relu -> sigmoid 1", n=100, batch=16, epochs=30, split=split)
    spec = write_spec(tmp_path, text, "m.net")
    result = train_run(check_source(text, str(spec)), tmp_path / "run", base_dir=tmp_path,
                       loop="scan", checkpoint_every=10)  # 3 chunks
    timing = json.loads((tmp_path / "run" / "run.json").read_text())["timing"]

    model, variables = load_run(tmp_path / "run")
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    splits, _ = load_data(check_source(text, str(spec)), tmp_path, model.loss_name)
    assert {name for name, _ in splits.parts()} == set(result.final)
    assert timing["train_seconds"] > 0 and timing["steps"] == 30 * -(-len(splits.train) // 16)
    for name, part in splits.parts():
        figures = result.final[name]
        reference = numpy_figures(params, np.asarray(part.x, np.float64),
                                  np.asarray(part.y, np.float64))
        assert figures["loss"] == pytest.approx(reference["loss"], rel=1e-5)
        assert figures["accuracy"] == reference["accuracy"]
