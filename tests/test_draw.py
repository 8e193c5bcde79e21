"""`netc draw` (runtime/draw.py): the checked net as SVG or PNG.

- what the checker records for it: a def call's arguments, a repeat's copies (sequence
  attrs), without changing names, shapes or the JSON summary;
- the SVG is well-formed XML; every layer is a box whose <text> holds the last part of its
  name and whose <title> holds the full name; every scope before that part is the text of
  a frame, an add node or a concat box, so every full name can be read off the drawing;
- residuals show as add nodes and concats as concat boxes, one per block; def calls and
  repeats as labelled frames;
- the layout is readable: no two boxes overlap, frames nest, labels lie on no box, text
  fits its box, every example and zoo model draws, ResNet-50 wraps into columns;
- the PNG opens (Pillow) at the drawing's size; bad paths fail in one line with the usual
  exit codes; `netc draw` imports neither JAX nor, for an SVG, matplotlib.
"""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import EXAMPLE_SPECS, EXAMPLES, one_error_line, run_cli, run_python, write_spec
from netc.compiler.check import check_file, check_source
from netc.compiler.summary import to_json
from netc.runtime import draw, draw_layout

SVG = "{http://www.w3.org/2000/svg}"
RESNET50 = EXAMPLES / "zoo" / "resnet50.net"
GOOGLENET = EXAMPLES / "zoo" / "googlenet.net"


def blocks(node, kind):
    """The nodes of `kind` under `node` (blocks included)."""
    found = [node] if node.kind == kind else []
    for child in node.children if node.is_block else ():
        if child is not None:
            found += blocks(child, kind)
    return found


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))  # raises on malformed XML


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(SVG + "g") if cls in g.get("class", "").split()]


def text_of(g: ET.Element, cls: str | None = None) -> list[str]:
    return ["".join(t.itertext()) for t in g.iter(SVG + "text")
            if cls is None or t.get("class") == cls]


# ---- what the checker records ------------------------------------------------------------


def test_def_calls_record_their_arguments_and_repeats_their_copies():
    net = check_file(RESNET50)
    layer2 = next(c for c in net.body.children if c.name == "layer2")
    assert layer2.attrs == {"def": "stage", "args": {"w": 128, "blocks": 4, "s": 2},
                            "repeats": ((1, 4, 3),)}
    first = layer2.children[0]
    assert first.attrs["def"] == "bottleneck_down" and first.attrs["args"] == {"w": 128, "s": 2}
    assert [c.name for c in layer2.children[1:4]] == [
        "layer2/bottleneck_1", "layer2/bottleneck_2", "layer2/bottleneck_3"]


def test_call_arguments_are_in_the_defs_order_defaults_included():
    net = check_source("input 4\ndef f(a, b=2, c=3) { fc a }\nf(c=5, a=1) -> sigmoid 1")
    assert list(net.body.children[0].attrs["args"].items()) == [("a", 1), ("b", 2), ("c", 5)]


def test_nested_repeats_are_ranges_inside_their_outer_one():
    net = check_source("input 4\nfc 3 -> repeat 2 { fc 4 -> repeat 3 { relu } } -> sigmoid 1")
    assert [c.name for c in net.body.children] == [
        "fc_1", "fc_2", "relu_1", "relu_2", "relu_3", "fc_3", "relu_4", "relu_5", "relu_6",
        "sigmoid_1"]
    assert sorted(net.body.attrs["repeats"]) == [(1, 9, 2), (2, 5, 3), (6, 9, 3)]


def test_the_json_summary_does_not_show_the_new_attrs():
    out = json.dumps(to_json(check_file(RESNET50)))
    assert '"repeats"' not in out and '"args"' not in out


# ---- the SVG ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RESNET50, GOOGLENET], ids=lambda p: p.stem)
def test_every_layer_is_a_box_with_its_name(path):
    net = check_file(path)
    root = parse(draw.to_svg(draw_layout.layout(net)))
    boxes = groups(root, "layer")
    assert len(boxes) == len(net.leaves())
    by_full_name = {g.find(SVG + "title").text.split(":")[0]: g for g in boxes}
    assert set(by_full_name) == {leaf.name for leaf in net.leaves()}
    for leaf in net.leaves():
        name, detail = text_of(by_full_name[leaf.name])
        assert name == leaf.name.rsplit("/", 1)[-1]
        assert detail.startswith(leaf.kind) and detail.endswith(
            "x".join(map(str, leaf.out_shape)))


@pytest.mark.parametrize("path", [RESNET50, GOOGLENET], ids=lambda p: p.stem)
def test_every_scope_of_every_name_is_written_on_the_drawing(path):
    """A layer's box shows the last part of its name; the parts before it are the labels
    of its def call's frame (`layer1: stage(...)`), its residual's add node or its concat."""
    net = check_file(path)
    root = parse(draw.to_svg(draw_layout.layout(net)))
    labels = {t.split(":")[0] for g in groups(root, "group") for t in text_of(g)}
    labels |= {t for g in root.iter(SVG + "text") if g.get("class") == "label"
               for t in ["".join(g.itertext()).split(":")[0]]}
    labels |= {t for g in groups(root, "add") + groups(root, "concat") for t in text_of(g)}
    for leaf in net.leaves():
        for scope in leaf.name.split("/")[:-1]:
            assert scope in labels, (leaf.name, scope)


def test_residuals_meet_at_add_nodes_and_concats_at_concat_boxes():
    for path in (RESNET50, GOOGLENET, EXAMPLES / "digits_resnet.net"):
        net = check_file(path)
        root = parse(draw.to_svg(draw_layout.layout(net)))
        residuals, concats = blocks(net.body, "residual"), blocks(net.body, "concat")
        adds = groups(root, "add")
        assert len(adds) == len(residuals)
        assert sorted(g.find(SVG + "title").text.split(":")[0] for g in adds) == sorted(
            r.name for r in residuals)
        assert len(groups(root, "concat")) == len(concats)
    assert len(residuals) == 4 and len(blocks(check_file(RESNET50).body, "residual")) == 16
    assert len(blocks(check_file(GOOGLENET).body, "concat")) == 9


def test_concat_branches_sit_side_by_side():
    net = check_file(EXAMPLES / "zoo" / "inception_module.net")
    d = draw_layout.layout(net)
    first = {b.name: b for b in d.of(draw_layout.Box) if b.name.startswith("conv_")}
    # the first conv of each branch: conv_1, conv_2, conv_4 (and conv_6 after the pool)
    tops = {first[n].y for n in ("conv_1", "conv_2", "conv_4")}
    assert len(tops) == 1
    xs = sorted(first[n].x for n in ("conv_1", "conv_2", "conv_4", "conv_6"))
    assert all(b - a >= d.of(draw_layout.Box)[0].w for a, b in itertools.pairwise(xs))
    join = next(b for b in d.of(draw_layout.Box) if b.cls == "concat")
    assert join.detail == "concat -> 14x14x512"
    assert join.y > max(b.y for b in d.of(draw_layout.Box) if b.cls == "layer")


def test_a_residual_body_and_its_shortcut_sit_side_by_side():
    d = draw_layout.layout(check_file(RESNET50))
    boxes = [b for b in d.of(draw_layout.Box) if b.title.startswith("layer2/bottleneck_down_1/")]
    conv_1 = next(b for b in boxes if b.name == "conv_1")
    down = next(b for b in boxes if b.name == "downsample")
    assert conv_1.y == down.y and down.x >= conv_1.x + conv_1.w


def test_def_calls_and_repeats_are_labelled_frames():
    root = parse(draw.to_svg(draw_layout.layout(check_file(RESNET50))))
    defs = {t.removesuffix(" (continued)") for g in groups(root, "def") for t in [
        g.find(SVG + "title").text]}
    assert "layer1: stage(w=64, blocks=3, s=1)" in defs
    assert "layer4: stage(w=512, blocks=3, s=2)" in defs
    assert "layer2/bottleneck_down_1: bottleneck_down(w=128, s=2)" in defs
    assert "layer3/bottleneck_5: bottleneck(w=256, s=1)" in defs
    assert len(defs) == 4 + 16  # four stages, sixteen bottlenecks
    shown = {"".join(t.itertext()).removesuffix(" (continued)") for t in root.iter(SVG + "text")
             if t.get("class") == "label"}
    assert {"layer1: stage(w=64, blocks=3, s=1)", "bottleneck_down_1: bottleneck_down(w=64, s=1)",
            "repeat 2", "repeat 3", "repeat 5"} <= shown
    repeats = groups(root, "repeat")
    assert {g.find(SVG + "title").text for g in repeats} == {"repeat 2", "repeat 3", "repeat 5"}


def test_frozen_layers_are_dashed_and_say_so():
    net = check_source("input 4\nfc 8 -> relu -> fc 3 as head -> sigmoid 1\n"
                       "train {\n  freeze fc_1\n}\n")
    frozen = {b.name: b for b in draw_layout.layout(net).of(draw_layout.Box) if b.cls == "layer"}
    assert frozen["fc_1"].frozen and frozen["fc_1"].title.endswith("(frozen)")
    assert not frozen["head"].frozen
    assert 'stroke-dasharray="4 3"' in draw.to_svg(draw_layout.layout(net))


def test_text_is_escaped():
    net = check_source('net q\ninput 4\ndef f(n, tag="a<b&c") { fc n }\nf(3) -> sigmoid 1')
    svg = draw.to_svg(draw_layout.layout(net))
    root = parse(svg)
    assert 'f_1: f(n=3, tag="a<b&c")' in {"".join(t.itertext()) for t in root.iter(SVG + "text")}


# ---- readability --------------------------------------------------------------------------


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def rect(item) -> tuple[float, float, float, float]:
    return (item.x, item.y, item.x + item.w, item.y + item.h)


def label_rect(f: draw_layout.Frame) -> tuple[float, float, float, float]:
    t = draw._frame_text(f)
    return (t.x, t.y - t.px, t.x + draw_layout.text_width(t.text, t.px), t.y + 3)


def assert_readable(d: draw_layout.Drawing) -> None:
    boxes = [rect(b) for b in d.of(draw_layout.Box)]
    for i, a in enumerate(boxes):
        assert a[0] >= 0 and a[1] >= 0 and a[2] <= d.width and a[3] <= d.height
        for b in boxes[i + 1:]:
            assert not overlap(a, b), (a, b)
    frames = d.of(draw_layout.Frame)
    for i, f in enumerate(frames):  # nested or apart, never crossing
        a = rect(f)
        for g in frames[i + 1:]:
            b = rect(g)
            inside = (a[0] <= b[0] and b[2] <= a[2] and a[1] <= b[1] and b[3] <= a[3]) or (
                b[0] <= a[0] and a[2] <= b[2] and b[1] <= a[1] and a[3] <= b[3])
            assert inside or not overlap(a, b), (f.label, g.label)
        label = label_rect(f)
        assert label[2] <= f.x + f.w, f.label  # the label fits its frame
        for b in boxes:
            assert not overlap(label, b), (f.label, b)
    L = draw_layout
    for b in d.of(L.Box):  # text fits its box
        assert L.text_width(b.name, L.NAME_PX) <= b.w - 2 * L.BOX_PAD + 0.01
        assert L.text_width(b.detail, L.DETAIL_PX) <= b.w - 2 * L.BOX_PAD + 0.01
    for a in d.of(draw_layout.Add):  # the add's label is on no box
        t = draw._add_label(a)
        label = (t.x - draw_layout.text_width(t.text, t.px), t.y - t.px, t.x, t.y + 3)
        assert not any(overlap(label, b) for b in boxes), a.title


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda p: p.stem)
def test_every_example_draws_readably(path):
    net = check_file(path)
    d = draw_layout.layout(net)
    assert_readable(d)
    root = parse(draw.to_svg(d))
    assert root.get("width") == str(d.width)
    assert len(groups(root, "layer")) == len(net.leaves())


def test_resnet50_wraps_into_columns_a_screen_can_show():
    d = draw_layout.layout(check_file(RESNET50))
    assert 1500 < d.width < 4000 and 1500 < d.height < 3000
    lefts = {round(f.x) for f in d.of(draw_layout.Frame) if f.depth == 0}
    assert len(lefts) >= 4  # columns side by side


def test_a_long_chain_stays_about_as_wide_as_tall():
    net = check_source("input 4\nrepeat 400 { fc 10 -> relu }\n-> sigmoid 1")
    d = draw_layout.layout(net)
    assert 0.8 < d.width / d.height < 3
    assert_readable(d)
    continued = [f for f in d.of(draw_layout.Frame) if f.label.endswith("(continued)")]
    assert continued and all(f.label == "repeat 400 (continued)" for f in continued)


def test_identity_shortcut_and_projection():
    net = check_source("input 8x8x4\nresidual { conv f=3 p=same c=4 -> relu } -> "
                       "residual { conv f=3 s=2 p=1 c=8 } -> flatten -> softmax 3")
    d = draw_layout.layout(net)
    assert len(d.of(draw_layout.Add)) == 2
    assert "projection" in [b.name for b in d.of(draw_layout.Box)]
    assert_readable(d)


# ---- the PNG ------------------------------------------------------------------------------


def test_png_is_written_and_opens(tmp_path):
    from PIL import Image

    out = tmp_path / "resnet50.png"
    rc, _, err = run_cli("draw", RESNET50, "--out", out)
    assert rc == 0, err
    d = draw_layout.layout(check_file(RESNET50))
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (d.width, d.height)
        assert image.convert("L").getextrema()[0] < 80  # there is ink on it
    assert out.stat().st_size < 1_500_000
    assert f"drawn to {out}" in err


def test_docs_pictures_are_there_and_small():
    from PIL import Image

    root = Path(__file__).resolve().parent.parent
    for name in ("resnet50.png", "googlenet.png"):
        path = root / "docs" / name
        assert path.stat().st_size < 1_500_000
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 1000


# ---- the command --------------------------------------------------------------------------


def test_svg_by_default_named_after_the_net(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli("draw", GOOGLENET)
    assert rc == 0, err
    assert out == ""
    parse((tmp_path / "googlenet.svg").read_text(encoding="utf-8"))


def test_missing_file_exits_2_in_one_line(tmp_path):
    rc, _, err = run_cli("draw", tmp_path / "nope.net", "--out", tmp_path / "x.svg")
    assert rc == 2
    assert "cannot read" in one_error_line(err)
    assert not (tmp_path / "x.svg").exists()


def test_unknown_format_exits_2_in_one_line(tmp_path):
    rc, _, err = run_cli("draw", RESNET50, "--out", tmp_path / "x.pdf")
    assert rc == 2
    assert ".svg or .png" in one_error_line(err)


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_unwritable_place_exits_1_in_one_line(tmp_path, suffix):
    lenet = EXAMPLES / "lenet5.net"
    (tmp_path / "file").write_text("")
    (tmp_path / f"folder.{suffix}").mkdir()
    for out in (tmp_path / "no" / "such" / f"x.{suffix}",  # no such folder
                tmp_path / "file" / f"x.{suffix}",  # a file where the folder should be
                tmp_path / f"folder.{suffix}"):  # a folder where the file should be
        rc, _, err = run_cli("draw", lenet, "--out", out)
        assert rc == 1, out
        assert "cannot write" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", f"folder.{suffix}"]


def test_a_spec_error_is_reported_like_check(tmp_path):
    spec = write_spec(tmp_path, "input 4x4x8\nconv f=5 c=16 -> relu\n")
    rc, out, err = run_cli("draw", spec, "--out", tmp_path / "x.svg")
    assert rc == 1
    assert "error: conv f=5 does not fit" in err and "1 error in" in err
    assert not (tmp_path / "x.svg").exists()


def test_too_large_for_a_png_says_to_write_svg(tmp_path):
    spec = write_spec(tmp_path, "input 4\nrepeat 6000 { fc 10 -> relu }\n-> sigmoid 1\n")
    rc, _, err = run_cli("draw", spec, "--out", tmp_path / "x.png")
    assert rc == 1
    assert "--out NAME.svg" in one_error_line(err)
    assert list(tmp_path.iterdir()) == [spec]  # no half-written file


def test_draw_imports_neither_jax_nor_matplotlib_for_an_svg(tmp_path):
    code = ("import sys\nfrom netc.runtime.cli import main\n"
            f"rc = main(['draw', {str(RESNET50)!r}, '--out', {str(tmp_path / 'r.svg')!r}])\n"
            "print(rc, 'jax' in sys.modules, 'matplotlib' in sys.modules)")
    done = run_python("-c", code)
    assert done.stdout.split() == ["0", "False", "False"], done.stderr
