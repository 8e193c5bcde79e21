"""netc: neural networks written as text, shape-checked at once, trained on JAX.

    import netc
    model = netc.compile("lenet5.net")          # a path, or the spec's text
    variables = model.init(jax.random.key(0))   # {"params": ..., "state": ...}
    y = model.apply(variables, x)               # pure: jit/vmap/grad-able
    f = netc.load_exported("run/model.onnx")    # `netc export`'s file as a callable x -> y

Importing netc does not import JAX; `compile`, `load` and `load_exported` do, when called.
"""

from __future__ import annotations

__version__ = "0.1.0"


def check(path_or_source):
    """Parse and shape-check a spec (a path, str or os.PathLike, or its text) ->
    netc.compiler.Net. No JAX."""
    from netc.compiler.check import check_file, check_source

    if _looks_like_path(path_or_source):
        return check_file(path_or_source)
    return check_source(path_or_source)


def compile(path_or_source, **options):
    """Check a spec and lower it to JAX -> netc.Model with pure `init` and `apply`."""
    from netc.compiler.model import compile_net

    return compile_net(check(path_or_source), **options)


def load(run_dir: str):
    """(model, variables) from a directory written by `netc train --out DIR`."""
    from netc.runtime.run import load_run

    return load_run(run_dir)


def load_exported(path):
    """A file written by `netc export` (StableHLO or ONNX) as a callable x -> y, x a batch of
    raw inputs (normalisation and the final softmax/sigmoid happen inside). StableHLO runs
    through jax.export, ONNX through ONNX Runtime; `.info` holds the header or metadata."""
    from netc.runtime.export import load_exported as load

    return load(path)


def _looks_like_path(text) -> bool:
    if not isinstance(text, str):  # a pathlib.Path or another os.PathLike
        return True
    return "\n" not in text and (text.endswith(".net") or ("->" not in text and len(text) < 4096
                                 and __import__("os").path.exists(text)))


__all__ = ["__version__", "check", "compile", "load", "load_exported"]
