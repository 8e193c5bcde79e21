"""`augment flip crop=P color=F` (LANGUAGE.md section 7, runtime/augment.py): training batches
of images only, on the device, keyed from (seed, epoch, step); labels, dev and test data
untouched; and on few examples of digits it raises the dev accuracy, the course's reason."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import netc
import numpy as np
import pytest
from conftest import EXAMPLES, Crash, CrashAfter, assert_trees_close, params_of, write_spec
from netc.compiler.remedies import Augment
from netc.dsl.diagnostics import SpecError
from netc.runtime.augment import augment_batch
from netc.runtime.run import train_run
from netc.runtime.train import Data, Trainer

M = 400


def images(m=M, shape=(6, 7, 2), seed=0):
    return np.random.default_rng(seed).uniform(0.1, 1.0, (m, *shape)).astype(np.float32)


def test_flip_mirrors_about_half_of_the_examples():
    x = images()
    y = np.asarray(augment_batch(Augment(flip=True), jax.random.key(0), jnp.asarray(x)))
    same = np.all(y == x, axis=(1, 2, 3))
    mirrored = np.all(y == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert abs(mirrored.mean() - 0.5) < 3 * np.sqrt(0.25 / M)  # binomial, 3 sigma


def test_crop_shifts_each_example_by_up_to_p_cells_with_zeros():
    p, x = 2, images()
    y = np.asarray(augment_batch(Augment(crop=p), jax.random.key(1), jnp.asarray(x)))
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    h, w = x.shape[1:3]
    offsets = []
    for i in range(M):
        found = [(a, b) for a in range(2 * p + 1) for b in range(2 * p + 1)
                 if np.array_equal(y[i], padded[i, a:a + h, b:b + w])]
        assert found, i
        offsets.append(found[0])
    counts = np.bincount([a * (2 * p + 1) + b for a, b in offsets], minlength=(2 * p + 1) ** 2)
    assert counts.min() > 0  # every offset occurs: uniform over 25, ~16 each


def test_color_is_a_brightness_shift_then_a_contrast_scale():
    f, x = 0.3, images(100)
    y = np.asarray(augment_batch(Augment(color=f), jax.random.key(2), jnp.asarray(x)),
                   np.float64)
    shifts, scales = [], []
    for i in range(len(x)):
        for c in range(x.shape[-1]):
            a, b = x[i, ..., c].ravel().astype(np.float64), y[i, ..., c].ravel()
            # y = (a + s - mean(a + s)) * k + mean(a + s) = k * (a - mean a) + mean a + s
            k = np.dot(a - a.mean(), b - b.mean()) / np.dot(a - a.mean(), a - a.mean())
            np.testing.assert_allclose(b, k * (a - a.mean()) + b.mean(), atol=1e-5)
            scales.append(k)
            shifts.append(b.mean() - a.mean())
    assert 1 - f <= min(scales) and max(scales) <= 1 + f and np.std(scales) > f / 4
    assert -f <= min(shifts) and max(shifts) <= f and np.std(shifts) > f / 4
    # the contrast is around each channel's own mean; the shift is the image's, not the channel's
    per_image = np.asarray(shifts).reshape(len(x), -1)
    np.testing.assert_allclose(per_image[:, 0], per_image[:, 1], atol=1e-5)


SPEC = """input 8x8x1
conv f=3 p=same c=8 -> relu -> maxpool f=2 -> fc 32 -> relu -> softmax 10
train {{
  data digits
  split {split}
  optimizer adam lr=0.003
  batch 64
  epochs {epochs}
  seed 0
{augment}
}}
"""


def trainer_for(text):
    net = netc.check(text)
    x = jnp.asarray(images(100, (8, 8, 1)))
    y = jnp.asarray(np.arange(100) % 10)
    return Trainer(net, Data(x, y), None), x, y


def test_batches_change_and_labels_do_not():
    trainer, x, y = trainer_for(SPEC.format(split="0.8 0.1 0.1", epochs=2,
                                            augment="  augment crop=2 color=0.2"))
    idx = jnp.arange(10, 74)
    xb, yb = trainer.batch_at(x, y, idx, 0, 0)
    np.testing.assert_array_equal(yb, y[idx])
    assert not np.allclose(xb, x[idx])
    again, _ = trainer.batch_at(x, y, idx, 0, 0)
    np.testing.assert_array_equal(again, xb)  # keyed from (seed, epoch, step)
    for epoch, step in ((0, 1), (1, 0)):
        other, _ = trainer.batch_at(x, y, idx, epoch, step)
        assert not np.allclose(other, xb)
    plain, _, _ = trainer_for(SPEC.format(split="0.8 0.1 0.1", epochs=2, augment=""))
    xb, yb = plain.batch_at(x, y, idx, 0, 0)
    np.testing.assert_array_equal(xb, x[idx])


def test_dev_and_test_are_never_augmented(tmp_path):
    """The final dev and test figures are those of the trained net on the unaugmented
    splits, computed here with netc.load and apply."""
    text = SPEC.format(split="0.6 0.2 0.2", epochs=3, augment="  augment crop=2 color=0.5")
    run = train_run(netc.check(text), tmp_path / "run", base_dir=tmp_path)
    model, variables = netc.load(run.out_dir)
    from netc.runtime.run import load_data

    splits, _ = load_data(model.net, tmp_path, model.loss_name)
    for name, part in (("dev", splits.dev), ("test", splits.test)):
        probs = np.asarray(model.apply(variables, part.x), np.float64)
        accuracy = np.mean(probs.argmax(-1) == part.y)
        loss = -np.mean(np.log(probs[np.arange(len(part.y)), part.y]))
        assert run.final[name]["accuracy"] == pytest.approx(accuracy)
        assert run.final[name]["loss"] == pytest.approx(loss, rel=1e-4)


def test_a_resumed_run_ends_bit_identical(tmp_path):
    text = SPEC.format(split="0.3 0.1 0.6", epochs=4, augment="  augment flip crop=1 color=0.2")
    whole = train_run(netc.check(text), tmp_path / "whole", base_dir=tmp_path)
    with pytest.raises(Crash):
        train_run(netc.check(text), tmp_path / "cut", base_dir=tmp_path, checkpoint_every=1,
                  reporter=CrashAfter(3))
    resumed = train_run(netc.check(text), tmp_path / "cut", base_dir=tmp_path, resume=True)
    assert_trees_close(params_of(resumed.out_dir), params_of(whole.out_dir))


@pytest.mark.slow
def test_on_few_digits_augmentation_raises_dev_accuracy(tmp_path):
    """90 training examples of digits, 150 epochs, no dropout: the plain net fits its
    training set and reaches ~0.90 on dev; crop and colour (digits are not mirror-
    symmetric, so no flip) make it generalise better."""
    text = (EXAMPLES / "digits_convnet.net").read_text().replace(
        "split 0.8 0.1 0.1", "split 0.05 0.5 0.45").replace("epochs 30", "epochs 150").replace(
        "-> dropout keep=0.8", "")
    plain = train_run(netc.check(text), tmp_path / "plain", base_dir=tmp_path)
    augmented = train_run(netc.check(text.replace("  seed 0", "  seed 0\n  augment crop=1 "
                                                  "color=0.1")), tmp_path / "aug",
                          base_dir=tmp_path)
    gain = augmented.final["dev"]["accuracy"] - plain.final["dev"]["accuracy"]
    print(f"dev accuracy {plain.final['dev']['accuracy']:.4f} -> "
          f"{augmented.final['dev']['accuracy']:.4f}")
    assert plain.final["train"]["accuracy"] == 1.0
    assert gain > 0.01
    info = json.loads((augmented.out_dir / "run.json").read_text())
    assert info["examples"]["train"] < 100


@pytest.mark.parametrize(("line", "message"), [
    ("augment flip", "augment works on images, but the input is a vector of 4"),
    ("augment crop=-1", "crop"),
    ("augment", "augment needs at least one of flip, crop=P, color=F"),
    ("augment color=1.5", "color=1.5"),
    ("augment flop", "flip"),
])
def test_augment_is_checked(tmp_path, line, message):
    text = f"input 4\nfc 3 -> softmax 2\ntrain {{\n  {line}\n}}\n"
    if line.split()[-1] != "flip":
        text = text.replace("input 4", "input 8x8x1")
    with pytest.raises(SpecError) as info:
        netc.check(write_spec(tmp_path, text))
    assert message in info.value.diagnostics[0].message
