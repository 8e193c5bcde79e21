"""The shipped examples and the language reference, checked with the in-process API.

Every `examples/**/*.net` must check cleanly; the model zoo must hit the published parameter
counts (and MACs where a figure is published); every full spec in docs/language.md must
check, so the documentation cannot drift. No JAX here: this file stays fast.
"""

from __future__ import annotations

import json
import math
import pathlib
import re

import pytest
from conftest import EXAMPLE_SPECS, EXAMPLES, ROOT, run_cli
from netc.compiler.check import check_file, check_source
from netc.compiler.summary import to_json

DOC = ROOT / "docs" / "language.md"
SPECS = EXAMPLE_SPECS


def _id(path: pathlib.Path) -> str:
    return path.relative_to(EXAMPLES).as_posix()


_cache: dict[str, object] = {}


def net(rel: str):
    """The checked example `rel` (relative to examples/), checked once per session."""
    if rel not in _cache:
        _cache[rel] = check_file(EXAMPLES / rel)
    return _cache[rel]


def layer(n, name: str):
    for leaf in n.leaves():
        if leaf.name == name:
            return leaf
    raise AssertionError(f"no layer named {name!r} in {n.name}: "
                         + ", ".join(x.name for x in n.leaves()))


# ---- every example checks -----------------------------------------------------------------


def test_there_are_examples():
    names = {_id(p) for p in SPECS}
    assert {"logistic_regression.net", "planar_flower.net", "deep_l_layer.net",
            "moons_adam.net", "moons_gd.net", "moons_momentum.net", "simple_convnet.net",
            "lenet5.net", "digits_convnet.net", "digits_resnet.net", "digits_mlp.net",
            "zoo/alexnet.net", "zoo/vgg16.net", "zoo/resnet50.net", "zoo/googlenet.net",
            "zoo/inception_module.net", "zoo/mobilenet_v1.net", "zoo/mobilenet_v2.net",
            "zoo/alexnet_caffe.net"} <= names


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_example_checks(path):
    n = net(_id(path))  # raises SpecError (with every diagnostic) if the spec is broken
    out = to_json(n)
    assert out["params"] == sum(x["params"] for x in out["layers"])
    assert out["macs"] == sum(x["macs"] for x in out["layers"])
    assert out["output"] == list(n.output_shape)


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_netc_check_json_exits_0(path):
    code, text, err = run_cli("check", "--json", path)
    assert code == 0, err
    out = json.loads(text)
    n = net(_id(path))
    assert (out["params"], out["state"], out["macs"], tuple(out["output"])) == (
        n.params, n.state, n.macs, n.output_shape)
    assert len(out["layers"]) == len(n.leaves())


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_example_has_a_header_comment(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 20, "start with a comment saying what it is"


# ---- counts, shapes, MACs -------------------------------------------------------------------

# (params, state, MACs, output shape), each worked out by hand in the example's header.
EXPECTED = {
    "logistic_regression.net": (12_289, 0, 12_288, (1,)),
    "planar_flower.net": (17, 0, 12, (1,)),
    "deep_l_layer.net": (245_973, 0, 245_940, (1,)),
    "moons_adam.net": (30, 0, 22, (1,)),
    "moons_gd.net": (30, 0, 22, (1,)),
    "moons_momentum.net": (30, 0, 22, (1,)),
    "simple_convnet.net": (27_301, 0, 2_796_590, (1,)),
    "lenet5.net": (61_706, 0, 416_520, (10,)),
    "digits_mlp.net": (17_226, 0, 17_024, (10,)),
    "digits_convnet.net": (6_106, 32, 84_224, (10,)),
    "digits_resnet.net": (42_906, 416, 1_123_648, (10,)),
    "zoo/alexnet.net": (62_378_344, 0, 1_135_256_096, (1000,)),
    "zoo/vgg16.net": (138_357_544, 0, 15_470_264_320, (1000,)),
    "zoo/resnet18.net": (11_689_512, 9_600, 1_814_073_344, (1000,)),
    "zoo/resnet50.net": (25_557_032, 53_120, 4_089_184_256, (1000,)),
    "zoo/googlenet.net": (6_624_904, 14_560, 1_498_376_192, (1000,)),
    "zoo/inception_module.net": (376_176, 0, 73_608_192, (14, 14, 512)),
    "zoo/mobilenet_v1.net": (4_231_976, 21_888, 568_740_352, (1000,)),
    "zoo/mobilenet_v2.net": (3_504_872, 34_112, 300_774_272, (1000,)),
    "zoo/alexnet_caffe.net": (60_965_224, 0, 724_406_816, (1000,)),
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_counts(rel):
    n = net(rel)
    assert (n.params, n.state, n.macs, n.output_shape) == EXPECTED[rel]


@pytest.mark.parametrize(("rel", "params"), [
    ("lenet5.net", 61_706),
    ("zoo/alexnet.net", 62_378_344),
    ("zoo/vgg16.net", 138_357_544),
    ("zoo/resnet18.net", 11_689_512),
    ("zoo/resnet50.net", 25_557_032),
    ("zoo/googlenet.net", 6_624_904),
    ("zoo/alexnet_caffe.net", 60_965_224),  # Caffe's bvlc_alexnet
])
def test_published_parameter_counts(rel, params):
    assert net(rel).params == params


@pytest.mark.parametrize(("rel", "macs", "published"), [
    ("zoo/resnet50.net", 4_089_184_256, 4.09e9),   # torchvision: 4.09 GFLOPS (multiply-adds)
    ("zoo/vgg16.net", 15_470_264_320, 15.47e9),
    ("zoo/resnet18.net", 1_814_073_344, 1.81e9),
    ("zoo/googlenet.net", 1_498_376_192, 1.50e9),
    ("zoo/mobilenet_v1.net", 568_740_352, 569e6),  # the paper's 569 million mult-adds
    ("zoo/mobilenet_v2.net", 300_774_272, 301e6),  # the paper's ~300 million
])
def test_published_macs(rel, macs, published):
    n = net(rel)
    assert n.macs == macs
    assert abs(n.macs - published) / published < 0.02


def test_vgg16_macs_exact():
    assert net("zoo/vgg16.net").macs == 15_470_264_320


def test_resnet50_stage_shapes_by_name():
    n = net("zoo/resnet50.net")
    expected = {
        "conv_1": (112, 112, 64),
        "maxpool_1": (56, 56, 64),
        "layer1/bottleneck_2/out": (56, 56, 256),
        "layer2/bottleneck_down_1/residual_1/conv_2": (28, 28, 128),  # v1.5: stride on 3x3
        "layer2/bottleneck_3/out": (28, 28, 512),
        "layer3/bottleneck_5/out": (14, 14, 1024),
        "layer4/bottleneck_2/out": (7, 7, 2048),
        "globalavgpool_1": (2048,),
        "softmax_1": (1000,),
    }
    assert {name: layer(n, name).out_shape for name in expected} == expected


def test_resnet50_structure():
    n = net("zoo/resnet50.net")
    leaves = n.leaves()
    convs = [x for x in leaves if x.kind == "conv"]
    assert len(convs) == 1 + 3 * 16 + 4  # stem, three per bottleneck, four downsamples
    assert all("bias" not in c.params for c in convs)  # every conv is followed by bn
    downs = [x for x in convs if x.name.endswith("/downsample")]
    assert [(d.attrs["s"], d.out_shape) for d in downs] == [
        ((1, 1), (56, 56, 256)), ((2, 2), (28, 28, 512)), ((2, 2), (14, 14, 1024)),
        ((2, 2), (7, 7, 2048))]
    assert not any(x.name.endswith("projection") for x in leaves)  # all shortcuts explicit
    assert sum(x.kind == "batchnorm" for x in leaves) == 53


def test_googlenet_inception_outputs():
    n = net("zoo/googlenet.net")
    concats = {}

    def walk(node):
        for child in node.children:
            if child is None:
                continue
            if child.kind == "concat":
                concats[child.name.split("/")[0]] = child.out_shape
            elif child.is_block:
                walk(child)

    walk(n.body)
    assert concats == {
        "inception3a": (28, 28, 256), "inception3b": (28, 28, 480),
        "inception4a": (14, 14, 512), "inception4b": (14, 14, 512),
        "inception4c": (14, 14, 512), "inception4d": (14, 14, 528),
        "inception4e": (14, 14, 832), "inception5a": (7, 7, 832),
        "inception5b": (7, 7, 1024),
    }
    convs = [x for x in n.leaves() if x.kind == "conv"]
    assert len(convs) == 3 + 9 * 6 and all("bias" not in c.params for c in convs)
    assert {x.attrs["eps"] for x in n.leaves() if x.kind == "batchnorm"} == {0.001}


def test_alexnet_shapes():
    n = net("zoo/alexnet.net")
    shapes = [x.out_shape for x in n.leaves() if x.kind in ("conv", "maxpool", "fc")]
    assert shapes == [(55, 55, 96), (27, 27, 96), (27, 27, 256), (13, 13, 256),
                      (13, 13, 384), (13, 13, 384), (13, 13, 256), (6, 6, 256),
                      (4096,), (4096,)]


def test_vgg16_stage_names():
    n = net("zoo/vgg16.net")
    pools = {x.name: x.out_shape for x in n.leaves() if x.kind == "maxpool"}
    assert pools == {"stage1/maxpool_1": (112, 112, 64), "stage2/maxpool_1": (56, 56, 128),
                     "stage3/maxpool_1": (28, 28, 256), "stage4/maxpool_1": (14, 14, 512),
                     "stage5/maxpool_1": (7, 7, 512)}
    assert sum(x.kind == "conv" for x in n.leaves()) == 13


def test_lenet5_and_simple_convnet_shapes():
    lenet = [x.out_shape for x in net("lenet5.net").leaves() if x.kind != "tanh"]
    assert lenet == [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (120,), (84,), (10,)]
    simple = net("simple_convnet.net")
    assert [layer(simple, a).out_shape for a in ("a1", "a2", "a3", "flatten_1")] == [
        (37, 37, 10), (17, 17, 20), (7, 7, 40), (1960,)]


def test_digits_resnet_projection():
    n = net("digits_resnet.net")
    proj = layer(n, "block_3/residual_1/projection")
    assert (proj.kind, proj.attrs["f"], proj.attrs["s"], proj.out_shape) == (
        "conv", (1, 1), (2, 2), (4, 4, 32))
    assert math.prod(proj.params["kernel"]) + proj.params["bias"][0] == 16 * 32 + 32
    assert sum(x.name.endswith("projection") for x in n.leaves()) == 1


def test_digits_convnet_conv_before_bn_has_no_bias():
    n = net("digits_convnet.net")
    assert "bias" not in layer(n, "conv_1").params
    assert "bias" in layer(n, "conv_2").params


# ---- training settings of the course nets ----------------------------------------------------


def test_course_training_settings():
    lr = net("logistic_regression.net").train
    assert (lr.init.name, lr.optimizer.name, lr.optimizer.options["lr"], lr.epochs) == (
        "zeros", "gd", 0.005, 2000)
    flower = net("planar_flower.net").train
    assert (flower.data.name, flower.init.name, flower.init.options["scale"]) == (
        "flower", "random", 0.01)
    assert (flower.optimizer.name, flower.optimizer.options["lr"], flower.epochs) == (
        "gd", 1.2, 10000)
    deep = net("deep_l_layer.net")
    assert [x.out_shape[0] for x in deep.leaves() if x.params] == [20, 7, 5, 1]
    assert (deep.train.init.name, deep.train.optimizer.options["lr"]) == ("xavier", 0.0075)


def test_batch_full_is_batch_gradient_descent():
    for rel in ("logistic_regression.net", "planar_flower.net", "deep_l_layer.net"):
        assert net(rel).train.batch is None, rel


def test_moons_nets_differ_only_in_the_optimizer():
    configs = {k: net(f"moons_{k}.net").train for k in ("adam", "gd", "momentum")}
    for cfg in configs.values():
        assert cfg.data.name == "moons"
        assert cfg.data.options == {"n": 300, "noise": 0.2, "seed": 3}
        assert (cfg.split, cfg.init.name, cfg.batch, cfg.epochs) == ((1, 0, 0), "he", 64, 10000)
    assert {k: (c.optimizer.name, c.optimizer.options["lr"]) for k, c in configs.items()} == {
        "adam": ("adam", 0.0007), "gd": ("gd", 0.0007), "momentum": ("momentum", 0.0007)}
    assert configs["momentum"].optimizer.options["beta"] == 0.9


def test_digits_nets_train_on_digits():
    for rel in ("digits_mlp.net", "digits_convnet.net", "digits_resnet.net"):
        n = net(rel)
        assert n.input_shape == (8, 8, 1) and n.output_shape == (10,)
        assert n.train.data.name == "digits" and n.train.split == (0.8, 0.1, 0.1)


# ---- the language reference -------------------------------------------------------------------

_FENCE = re.compile(r"^```net[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def doc_blocks() -> list[tuple[int, str]]:
    """(line, text) of each ```net block in docs/language.md."""
    text = DOC.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in _FENCE.finditer(text)]


def full_specs() -> list[tuple[int, str]]:
    return [(line, body) for line, body in doc_blocks()
            if re.search(r"^\s*input\s", body, re.M)]


def test_doc_has_full_specs():
    assert len(full_specs()) >= 10


@pytest.mark.parametrize(("line", "body"), full_specs(),
                         ids=[f"line{line}" for line, _ in full_specs()])
def test_doc_spec_checks(line, body):
    check_source(body, f"docs/language.md:{line}")


# ---- MobileNet v1/v2 and Caffe's AlexNet: grouped and depthwise convolutions -------------


@pytest.mark.parametrize(("rel", "trainable", "statistics"), [
    ("zoo/mobilenet_v1.net", 4_231_976, 21_888),   # Keras: trainable / non-trainable
    ("zoo/mobilenet_v2.net", 3_504_872, 34_112),
])
def test_mobilenets_match_keras_trainable_and_bn_statistics(rel, trainable, statistics):
    n = net(rel)
    assert (n.params, n.state) == (trainable, statistics)


def test_mobilenet_v1_layout():
    n = net("zoo/mobilenet_v1.net")
    kinds = [leaf.kind for leaf in n.leaves()]
    assert kinds.count("dwconv") == 13 and kinds.count("relu6") == 27
    assert kinds.count("conv") == 14 and kinds.count("batchnorm") == 27
    shapes = {leaf.name: leaf.out_shape for leaf in n.leaves()}
    assert shapes["conv_1"] == (112, 112, 32)
    assert shapes["separable_2/dwconv_1"] == (56, 56, 64)       # stride 2, before widening
    assert shapes["separable_2/conv_1"] == (56, 56, 128)
    assert shapes["separable_13/conv_1"] == (7, 7, 1024)
    assert all(leaf.params.get("kernel", (0, 0, 1))[2] == 1
               for leaf in n.leaves() if leaf.kind == "dwconv")
    assert not any("bias" in leaf.params for leaf in n.leaves() if leaf.kind != "softmax")


def test_mobilenet_v2_layout():
    n = net("zoo/mobilenet_v2.net")
    leaves = n.leaves()
    kinds = [leaf.kind for leaf in leaves]
    assert kinds.count("dwconv") == 17
    blocks = [x for x in n.body.children if x.kind == "sequence"]
    residuals = [leaf.name.split("/")[0] for leaf in leaves if "residual_1" in leaf.name]
    assert len(blocks) == 16 and len(set(residuals)) == 10  # 10 blocks add their input
    shapes = {leaf.name: leaf.out_shape for leaf in leaves}
    assert (shapes["conv_1"], shapes["conv_2"]) == ((112, 112, 32), (112, 112, 16))
    assert shapes["inverted_1/conv_1"] == (112, 112, 96)        # expanded 6x
    assert shapes["inverted_1/dwconv_1"] == (56, 56, 96)
    assert shapes["inverted_6/conv_2"] == (7, 7, 320)
    assert shapes["conv_3"] == (7, 7, 1280)


def test_alexnet_caffe_two_towers():
    n = net("zoo/alexnet_caffe.net")
    convs = [leaf for leaf in n.leaves() if leaf.kind == "conv"]
    assert [c.attrs["groups"] for c in convs] == [1, 2, 1, 2, 2]
    assert [c.params["kernel"] for c in convs] == [
        (11, 11, 3, 96), (5, 5, 48, 256), (3, 3, 256, 384), (3, 3, 192, 384), (3, 3, 192, 256)]
    # grouping halves conv2, conv4 and conv5: the single-tower AlexNet has 1,413,120 more
    assert net("zoo/alexnet.net").params - n.params == (5 * 5 * 48 * 256 + 3 * 3 * 192 * 384
                                                        + 3 * 3 * 192 * 256)
