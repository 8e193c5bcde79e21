"""The machine ceilings: float32 matmul and 3x3 convolution GFLOP/s in JAX and PyTorch."""

from __future__ import annotations

from timing import median_time

CONV_SIZE, CONV_CHANNELS = 56, 64  # the conv: (batch, 56, 56, 64) -> 64 channels, 3x3 SAME


def _ceiling_figures(contender, opts, matmul_times, conv_times):
    """The case's figures from the (median, min) seconds of one matmul and one conv call."""
    (mm_med, mm_min), (cv_med, cv_min) = matmul_times, conv_times
    N, Bc, H, C = opts.matmul_n, opts.conv_batch, CONV_SIZE, CONV_CHANNELS
    mm_flops, cv_flops = 2.0 * N**3, 2.0 * Bc * H * H * C * C * 9
    return dict(
        case="ceilings",
        contender=contender,
        matmul_n=N,
        matmul_s=mm_med,
        matmul_gflops=mm_flops / mm_med / 1e9,
        matmul_gflops_best=mm_flops / mm_min / 1e9,
        conv_shape=f"{Bc}x{H}x{H}x{C}->{C} 3x3",
        conv_s=cv_med,
        conv_gflops=cv_flops / cv_med / 1e9,
        conv_gflops_best=cv_flops / cv_min / 1e9,
        reps=opts.reps,
    )


def ceilings_jax(opts):
    """float32 matmul N^3 and 3x3 NHWC conv GFLOP/s with jax.jit (median of opts.reps)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    N = opts.matmul_n
    key = jax.random.key(0)
    a = jax.random.normal(key, (N, N), jnp.float32)
    b = jax.random.normal(jax.random.fold_in(key, 1), (N, N), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(mm(a, b))
    matmul_times = median_time(lambda: jax.block_until_ready(mm(a, b)), opts.reps)

    Bc, H, C = opts.conv_batch, CONV_SIZE, CONV_CHANNELS
    x = jax.random.normal(key, (Bc, H, H, C), jnp.float32)
    w = jax.random.normal(key, (3, 3, C, C), jnp.float32)
    conv = jax.jit(
        lambda x, w: lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    jax.block_until_ready(conv(x, w))
    conv_times = median_time(lambda: jax.block_until_ready(conv(x, w)), opts.reps)
    return _ceiling_figures("jax", opts, matmul_times, conv_times)


def ceilings_torch(opts):
    """The same two kernels in PyTorch (2 threads), to explain torch-vs-XLA differences."""
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    N = opts.matmul_n
    a, b = torch.randn(N, N), torch.randn(N, N)
    a @ b
    matmul_times = median_time(lambda: a @ b, opts.reps)
    Bc, H, C = opts.conv_batch, CONV_SIZE, CONV_CHANNELS
    x = torch.randn(Bc, C, H, H).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(C, C, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        conv_times = median_time(lambda: conv(x), opts.reps)
    return _ceiling_figures("torch", opts, matmul_times, conv_times)


CONTENDERS = {"jax": ceilings_jax, "torch": ceilings_torch}
