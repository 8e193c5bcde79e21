"""Data parallelism over several devices (runtime/devices.py): with 4 simulated CPU devices a
run ends with the parameters of a 1-device run (float32 tolerance), for an MLP with
batchnorm and a residual block, a BN ConvNet (the step loop) with gradient accumulation,
with --shard-params too; a checkpoint written on 4 devices resumes on 1 and the reverse.

JAX fixes its device count when it starts, so the trainings run in one subprocess started
with XLA_FLAGS=--xla_force_host_platform_device_count=4 (SCRIPT below), which reports the
largest parameter differences as JSON."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from conftest import run_python, write_spec

MLP = """input 2
fc 8 -> bn -> relu -> residual { fc 8 -> relu } -> sigmoid 1
train {
  data moons n=203 noise=0.2
  split 0.8 0.2 0
  batch 32
  epochs 6
  seed 0
}
"""  # 162 training examples: 5 minibatches of 32 and a last one of 2, which runs whole

CNN = """input 8x8x1
conv f=3 p=same c=12 -> bn -> relu -> maxpool f=2 -> conv f=3 p=same c=12 -> relu
-> flatten -> fc 16 -> relu -> softmax 10
train {
  data digits
  split 0.3 0.1 0.6
  batch 64
  epochs 3
  seed 0
  accumulate 2
}
"""

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import jax, numpy as np, netc
    from netc.runtime.devices import Placement
    from netc.runtime.run import train_run

    folder = Path(sys.argv[1])
    assert len(jax.devices()) == 4, jax.devices()

    def train(spec, out, devices, shard=False, **kw):
        placement = None if devices == 1 else Placement.over(jax.devices()[:devices], shard)
        return train_run(netc.check(folder / spec), folder / out, base_dir=folder,
                         placement=placement, **kw)

    def gap(a, b):
        _, x = netc.load(folder / a)
        _, y = netc.load(folder / b)
        return max(float(np.abs(np.asarray(p) - np.asarray(q)).max())
                   for p, q in zip(jax.tree.leaves(x), jax.tree.leaves(y)))

    class Crash(Exception):
        pass

    class CrashAfter:
        def __init__(self, epoch): self.epoch = epoch
        def warn(self, message): pass
        def start(self, net, trainer, done): self.done = done
        def finish(self, final, interrupted): pass
        def epochs(self, records):
            if records[-1]["epoch"] >= self.epoch:
                raise Crash

    out = {}
    for spec in ("mlp.net", "cnn.net"):
        base = spec[:-4]
        train(spec, base + "-1", 1)
        train(spec, base + "-4", 4)
        train(spec, base + "-4s", 4, shard=True)
        out[base + " 4 devices"] = gap(base + "-1", base + "-4")
        out[base + " 4 devices, shard-params"] = gap(base + "-1", base + "-4s")
    out["loop cnn"] = json.loads((folder / "cnn-4" / "run.json").read_text())["timing"]["loop"]
    out["mesh"] = json.loads((folder / "mlp-4s" / "run.json").read_text())["mesh"]
    for first, then, shard in ((4, 1, False), (1, 4, False), (4, 1, True), (1, 4, True)):
        name = f"resume-{first}-{then}" + "s" * shard
        try:  # Orbax writes the carry as it is placed: 4 shards of each split array
            train("mlp.net", name, first, shard=shard and first > 1, checkpoint_every=1,
                  reporter=CrashAfter(3))
        except Crash:
            pass
        resumed = CrashAfter(99)
        train("mlp.net", name, then, shard=shard and then > 1, resume=True, reporter=resumed)
        label = f"resume {first} -> {then}" + ", shard-params" * shard
        out[label] = gap("mlp-1", name)
        out[label + " after"] = resumed.done
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("devices")
    write_spec(folder, MLP, "mlp.net")
    write_spec(folder, CNN, "cnn.net")
    script = write_spec(folder, SCRIPT, "script.py")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "NETC_CACHE_DIR": "off"}
    proc = run_python(script, folder, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mlp 4 devices", "mlp 4 devices, shard-params",
                                  "cnn 4 devices", "cnn 4 devices, shard-params"])
def test_four_devices_end_with_the_one_device_parameters(report, case):
    assert report[case] < 1e-5


@pytest.mark.slow
def test_the_convnet_ran_the_step_loop_and_the_mesh_is_recorded(report):
    assert report["loop cnn"] == "step"
    assert report["mesh"]["axes"] == {"data": 4} and report["mesh"]["shard_params"]
    assert report["mesh"]["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["resume 4 -> 1", "resume 1 -> 4",
                                  "resume 4 -> 1, shard-params", "resume 1 -> 4, shard-params"])
def test_a_checkpoint_resumes_on_another_device_count(report, case):
    assert report[case] < 1e-5
    # the crash came as epoch 3 was reported, before its checkpoint: resumed after epoch 2
    assert report[case + " after"] == 2


def test_a_batch_that_does_not_split_names_the_sizes_that_do(tmp_path):
    spec = write_spec(tmp_path, MLP.replace("batch 32", "batch 30"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = run_python("-m", "netc", "train", spec, "--out", tmp_path / "run", env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("netc: error: batch 30 does not split over 4 devices: use "
                                   "a multiple of 4, such as 28 or 32")
    proc = run_python("-m", "netc", "train", spec, "--out", tmp_path / "run", "--devices", "5",
                      env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "netc: error: --devices 5: this machine has 4 cpu devices"
    proc = run_python("-m", "netc", "train", spec, "--out", tmp_path / "run", "--devices", "1",
                      "--shard-params", env=env)
    assert proc.returncode == 2 and "--shard-params needs more than one device" in proc.stderr


def test_accumulate_must_divide_the_batch():
    import netc
    from netc.dsl.diagnostics import SpecError

    with pytest.raises(SpecError) as info:
        netc.check(CNN.replace("accumulate 2", "accumulate 3"))
    [d] = info.value.diagnostics
    assert d.code == "E414" and "64 % 3 = 1" in d.message


def test_accumulated_micro_batches_give_the_whole_batchs_update():
    """accumulate K: K micro-batches' averaged gradients are the whole minibatch's (no
    batchnorm here), and the cost and accuracy sums are the whole batch's."""
    import jax
    import netc
    import numpy as np
    import optax

    text = "input 4\nfc 8 -> relu -> fc 6 -> tanh -> sigmoid 2\ntrain {\n  batch 12\n%s}\n"
    whole, micro = netc.compile(text % ""), netc.compile(text % "  accumulate 3\n")
    variables = whole.init(jax.random.key(0))
    tx = optax.adam(0.1)
    x = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    args = (variables["params"], variables["state"], tx.init(variables["params"]), x, y,
            jax.random.key(1))
    a = jax.jit(whole.step_fn(tx))(*args)
    b = jax.jit(micro.step_fn(tx, accumulate=3))(*args)
    np.testing.assert_allclose(a[3], b[3], rtol=1e-6)
    # hits and counted, and (sigmoid 2: two tasks) each task's hits and known labels
    assert {k: np.asarray(v).tolist() for k, v in a[4].items()} == \
        {k: np.asarray(v).tolist() for k, v in b[4].items()}
    assert set(a[4]) == {"hits", "counted", "task_hits", "task_known"}
    for p, q in zip(jax.tree.leaves(a[0]), jax.tree.leaves(b[0])):
        np.testing.assert_allclose(p, q, atol=1e-6)
