"""`--set NAME.OPTION=VALUE` on a layer: the edit is the hand edit (same text where it
matters, bitwise the same parameters after training), spec.net holds it, dropout's keep and
rate replace each other, shared def/repeat text and bad names, options and values are
one-line errors, and train settings keep their keys."""

from __future__ import annotations

import pytest
from conftest import assert_trees_close, moons_mlp, one_error_line, params_of, run_cli, write_spec
from netc.compiler.check import check_source
from netc.compiler.overrides import OverrideError, apply_overrides

LAYERS = "fc 16 -> relu -> dropout keep=0.9 -> fc 8 -> relu -> dropout rate=0.2 -> fc 1 -> sigmoid"
SPEC = moons_mlp(LAYERS, epochs=3)


def model_part(text: str) -> str:
    return text.split("train {")[0]


@pytest.mark.parametrize("items, edited", [
    (["dropout_1.keep=0.5"], LAYERS.replace("keep=0.9", "keep=0.5")),
    (["dropout_2.keep=0.5"], LAYERS.replace("rate=0.2", "keep=0.5")),  # keep replaces rate
    (["dropout_1.rate=0.3"], LAYERS.replace("keep=0.9", "rate=0.3")),
    (["fc_1.units=32"], LAYERS.replace("fc 16", "fc 32")),  # positional stays positional
    (["fc_2.units=2*8"], LAYERS.replace("fc 8", "fc units=2*8")),
    (["fc_1.bias=false", "dropout_1.keep=1"],
     LAYERS.replace("fc 16", "fc 16 bias=false").replace("keep=0.9", "keep=1")),
])
def test_the_override_is_the_hand_edit(items, edited):
    applied = apply_overrides(SPEC, items, "s.net")
    assert applied == SPEC.replace(LAYERS, edited)


@pytest.mark.parametrize("layers, item, edited, units", [
    ("fc 10 -> softmax init=he", "softmax_1.units=3", "fc 10 -> softmax 3 init=he", 3),
    ("fc 10 -> softmax init=he", "softmax_1.bias=false", "fc 10 -> softmax init=he bias=false",
     10),
    ("fc 10 -> softmax as head", "head.units=3", "fc 10 -> softmax 3 as head", 3),
    ("fc 10 -> softmax bias=false init=he", "softmax_1.units=2*2",
     "fc 10 -> softmax bias=false init=he units=2*2", 4),
])
def test_an_added_positional_value_comes_right_after_the_kind(layers, item, edited, units):
    spec = moons_mlp(layers)
    applied = apply_overrides(spec, [item])
    assert applied == spec.replace(layers, edited)
    assert check_source(applied).leaves()[-1].out_shape == (units,)


def test_layer_and_train_keys_mix_and_the_checked_net_has_the_values():
    net = check_source(apply_overrides(SPEC, ["epochs=1", "dropout_1.keep=0.6",
                                              "optimizer.lr=0.05", "fc_2.units=5"], "s.net"))
    leaves = {leaf.name: leaf for leaf in net.leaves()}
    assert leaves["dropout_1"].attrs["keep"] == 0.6
    assert leaves["fc_2"].out_shape == (5,) and leaves["dropout_2"].attrs["keep"] == 0.8
    assert net.train.epochs == 1 and net.train.optimizer.options["lr"] == 0.05


def test_names_inside_blocks_and_as_names():
    spec = moons_mlp("residual { fc 2 -> relu } -> fc 4 as optimizer -> relu -> fc 1 -> sigmoid")
    applied = apply_overrides(spec, ["residual_1/fc_1.units=2", "layer:optimizer.units=6"])
    assert "residual { fc 2 -> relu } -> fc 6 as optimizer" in applied
    # a plain `optimizer.` key stays the train setting's
    with pytest.raises(OverrideError) as info:
        apply_overrides(spec, ["optimizer.units=6"])
    assert str(info.value).startswith("--set optimizer.units=6: optimizer momentum has no "
                                      "argument 'units'")
    assert str(info.value).endswith("; a layer is named optimizer too: --set "
                                    "layer:optimizer.units=6 sets its option")


ERRORS = {
    "dropout_3.keep=0.5": "no train setting or layer is named 'dropout_3' (did you mean "
                          "dropout_2? settings: data, split, ",
    "layer:dropout_3.keep=0.5": "no layer is named 'dropout_3' (did you mean dropout_2? layers: "
                                "fc_1, relu_1, dropout_1, fc_2, relu_2, dropout_2, fc_3, "
                                "sigmoid_1)",
    # a mistyped train setting not close to any: both kinds of key are listed
    "opt.lr=0.1": "no train setting or layer is named 'opt' (settings: data, split, normalize, ",
    "dropout_1.kep=0.5": "dropout_1 (dropout) has no option 'kep' (did you mean dropout_1.keep? "
                         "dropout takes: keep, rate)",
    "dropout_1.keep=1.5": "expects a probability in (0, 1]",
    "fc_1.units=0": "expects a positive integer",
    "fc_1.units=3 bias=false": "'3 bias=false' is not one value for units",
    "optim.lr=0.1": "unknown train setting 'optim' (did you mean --set optimizer.lr=0.1?",
    # a comment would drop the rest of the line (relu and dropout) and train on
    "fc_1.units=3 # x": "'3 # x' is not one value for units (write one number, word or "
                        "expression without spaces; '#' starts a comment)",
    "dropout_1.keep=0.5#": "'0.5#' is not one value for keep",
    # in a train value too: spec.net would hold the comment, an in-place edit lose the rest
    "optimizer.lr=0.1 # x": "the value is not all read ('#' starts a comment; write the value "
                            "alone)",
    "epochs=2#": "the value is not all read ('#' starts a comment",
    # the option is missing (it was an unknown train setting with a hint at layer:fc_1.=3)
    "fc_1.=3": "the option is missing: write fc_1.OPTION=VALUE (fc takes: units, bias, init)",
    "layer:fc_1.=3": "the option is missing: write fc_1.OPTION=VALUE (fc takes: units, ",
    # the name is missing
    ".units=3": "the name before '.units' is missing: write NAME.units=VALUE, NAME a train "
                "setting (optimizer.lr) or a layer as `netc check` lists them (fc_1.units)",
    "layer:.units=3": "write NAME.OPTION=VALUE for a layer, e.g. --set dropout_1.keep=0.8",
}


@pytest.mark.parametrize("item", ERRORS)
def test_errors_are_one_line_naming_the_set(tmp_path, item):
    path = write_spec(tmp_path, SPEC, "s.net")
    code, out, err = run_cli("train", path, "--out", tmp_path / "run", "--set", item)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"netc: error: --set {item}: ") and ERRORS[item] in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("layers, words", [
    ("repeat 2 { fc 4 -> relu } -> fc 1 -> sigmoid", "fc_1 is written once for 2 layers"),
    ("def block(n) { fc n -> relu } block(4) -> block(3) -> fc 1 -> sigmoid",
     "block_1/fc_1 is written once for 2 layers"),
    ("residual { fc 3 -> relu } -> fc 1 -> sigmoid", "made by its residual"),
])
def test_text_that_is_not_one_layers_own_cannot_change(layers, words):
    spec = moons_mlp(layers)
    name = words.split()[0] if "written" in words else "residual_1/projection"
    with pytest.raises(OverrideError) as info:
        apply_overrides(spec, [f"{name}.units=5"])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_def_called_once_can_change():
    spec = moons_mlp("def block(n) { fc n -> relu } block(4) -> fc 1 -> sigmoid")
    assert "{ fc 5 -> relu }" in apply_overrides(spec, ["block_1/fc_1.units=5"])


def test_train_with_set_keep_is_training_the_hand_edited_spec(tmp_path):
    """Same seed, bitwise the same parameters; spec.net holds the edited layer."""
    path = write_spec(tmp_path, SPEC, "s.net")
    code, _, err = run_cli("train", path, "--out", tmp_path / "set", "--quiet",
                           "--set", "dropout_1.keep=0.5")
    assert code == 0, err
    hand = write_spec(tmp_path, SPEC.replace("keep=0.9", "keep=0.5"), "hand.net")
    code, _, err = run_cli("train", hand, "--out", tmp_path / "hand", "--quiet")
    assert code == 0, err
    assert "dropout keep=0.5" in (tmp_path / "set" / "spec.net").read_text()
    assert_trees_close(params_of(tmp_path / "set"), params_of(tmp_path / "hand"))
    # and the keep matters: the spec as written trains to other parameters
    code, _, err = run_cli("train", path, "--out", tmp_path / "plain", "--quiet")
    assert code == 0, err
    with pytest.raises(AssertionError):
        assert_trees_close(params_of(tmp_path / "set"), params_of(tmp_path / "plain"))


def test_a_value_that_breaks_another_line_names_that_line():
    spec = moons_mlp("fc 4 -> residual {\n  fc 4 -> relu\n} shortcut { fc 4 } -> fc 1 -> sigmoid")
    with pytest.raises(OverrideError) as info:
        apply_overrides(spec, ["residual_1/fc_1.units=3"])
    assert str(info.value) == (
        "--set residual_1/fc_1.units=3: line 5 then fails: residual: the body gives vector 3 "
        "but the shortcut gives vector 4; they must match to be added")


@pytest.mark.parametrize("item", ["fc_1.units=3\n-> relu", "epochs=2\n  batch 4",
                                  "fc_1.units=3\r"])
def test_a_line_break_in_a_set_is_one_line_refused(tmp_path, item):
    path = write_spec(tmp_path, SPEC, "s.net")
    code, out, err = run_cli("train", path, "--out", tmp_path / "run", "--set", item)
    assert code == 1
    shown = item.replace("\r", "\\r").replace("\n", "\\n")
    assert one_error_line(err) == (f"netc: error: --set {shown}: a --set is one line (this one "
                                   "holds a line break)")
    assert not (tmp_path / "run").exists()


CONCAT = ("net c\ninput 8x8x4\nconcat { conv c=2 f=3 p=same | conv c=3 f=1 } -> gap -> softmax 3\n"
          "train {\n  data moons\n}\n")


def test_layer_sets_are_checked_together():
    """Either edit alone leaves the concat's branches at 8x8 and 6x6; together both are 6x6."""
    both = ["concat_1/conv_1.p=valid", "concat_1/conv_2.f=3"]
    applied = apply_overrides(CONCAT, both)
    assert "concat { conv c=2 f=3 p=valid | conv c=3 f=3 } -> gap" in applied
    concat = next(x for x in check_source(applied).leaves() if x.name == "concat_1/conv_2")
    assert concat.out_shape == (6, 6, 3)
    for item in both:
        with pytest.raises(OverrideError) as info:
            apply_overrides(CONCAT, [item])
        assert str(info.value).startswith(f"--set {item}: concat branches must agree")


def test_a_failure_names_the_set_whose_layer_it_points_at_or_all_of_them():
    with pytest.raises(OverrideError) as info:
        apply_overrides(SPEC, ["fc_1.units=32", "dropout_1.keep=1.5", "fc_2.units=4"])
    assert str(info.value).startswith("--set dropout_1.keep=1.5: ")
    assert "expects a probability in (0, 1]" in str(info.value)
    with pytest.raises(OverrideError) as info:
        apply_overrides(CONCAT, ["concat_1/conv_1.p=valid", "concat_1/conv_2.f=5"])
    assert str(info.value).startswith("--set concat_1/conv_1.p=valid --set concat_1/conv_2.f=5: "
                                      "concat branches must agree on every axis but the "
                                      "channels: branch 1 (line 3) gives 6x6x2; branch 2 "
                                      "(line 3) gives 4x4x3")
    assert "\n" not in str(info.value)


def test_tunes_best_spec_writes_layer_sets_that_only_check_together():
    from netc.runtime.tune.specedit import write_settings

    written = write_settings(CONCAT, ["concat_1/conv_1.p=valid", "epochs=2",
                                      "concat_1/conv_2.f=3"])
    assert written == CONCAT.replace("p=same", "p=valid").replace("f=1", "f=3").replace(
        "  data moons\n", "  data moons\n  epochs 2\n")


def test_an_unknown_name_lists_the_train_settings_and_the_layers():
    from netc.compiler.settings import KEYS

    with pytest.raises(OverrideError) as info:
        apply_overrides(SPEC, ["opt.lr=0.1"])
    assert str(info.value) == (
        "--set opt.lr=0.1: no train setting or layer is named 'opt' (settings: "
        + ", ".join(KEYS) + "; layers: fc_1, relu_1, dropout_1, fc_2, relu_2, dropout_2, "
        "fc_3, sigmoid_1)")


def test_a_layer_named_like_a_setting_is_hinted_at_only_with_an_option():
    spec = moons_mlp("fc 4 as optimizer -> relu -> fc 1 -> sigmoid")
    with pytest.raises(OverrideError) as info:
        apply_overrides(spec, ["optimizer.=gd"])
    assert str(info.value) == ("--set optimizer.=gd: the option is missing: write "
                               "optimizer.OPTION=VALUE, or optimizer=VALUE for the whole setting")
    with pytest.raises(OverrideError) as info:
        apply_overrides(spec, ["optimizer.=3"])
    assert "layer:" not in str(info.value)
    with pytest.raises(OverrideError) as info:
        apply_overrides(spec, ["optimizer.units=3x"])
    assert str(info.value).endswith("; a layer is named optimizer too: --set "
                                    "layer:optimizer.units=3x sets its option")
