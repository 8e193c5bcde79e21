"""Data augmentation of training batches, on the device inside the compiled step
(`augment flip crop=P color=F`, LANGUAGE.md section 7), with DeepMind's dm_pix.

Per example:
    flip     mirrored left-right with probability 0.5
    crop=P   padded with P cells of zeros on every side, then cropped back to H x W at a
             uniformly drawn offset (a shift of up to P cells each way)
    color=F  brightness shifted by U(-F, F), then contrast scaled by U(1-F, 1+F) around
             each channel's mean (in the units of the inputs, after `normalize`)

All of a batch's random numbers are one uniform draw of shape (m, 5) from its key, which
comes from (seed, epoch, step) (runtime/train.py), so a run, and a run resumed from a
checkpoint, draw the same augmentations. (dm_pix's random_* functions draw per example and
per operation: XLA:CPU took 0.8-2 s to compile those draws, against 0.1 s for one draw.)
Dev and test data are never augmented: evaluation does not pass through here.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
from jax import lax
from netc.compiler.remedies import Augment


def augment_batch(augment: Augment, key, x):
    """x: (m, H, W, C) or (m, H, W) images -> the same shape, each example augmented."""
    plain = x.ndim == 3
    images = x[..., None] if plain else x
    u = jax.random.uniform(key, (images.shape[0], 5), images.dtype)
    out = jax.vmap(lambda image, draws: augment_image(augment, image, draws))(images, u)
    return out[..., 0] if plain else out


def augment_image(augment: Augment, image, u):
    """One (H, W, C) image with its five uniform draws in [0, 1): flip, the crop's row and
    column offsets, brightness, contrast."""
    if augment.flip:
        image = jnp.where(u[0] < 0.5, pix.flip_left_right(image), image)
    if augment.crop:
        p = augment.crop
        padded = jnp.pad(image, ((p, p), (p, p), (0, 0)))
        offsets = jnp.floor(u[1:3] * (2 * p + 1)).astype(jnp.int32)  # 0 .. 2p
        image = lax.dynamic_slice(padded, (offsets[0], offsets[1], 0), image.shape)
    if augment.color:
        f = augment.color
        image = pix.adjust_brightness(image, f * (2 * u[3] - 1))
        image = pix.adjust_contrast(image, 1 + f * (2 * u[4] - 1))
    return image
