"""Diagnostics as a user sees them: every broken spec in tests/broken/ beside its exact stderr.

Each `tests/broken/NAME.net` holds ONE kind of mistake; `NAME.expected` is the exact stderr of
`netc check tests/broken/NAME.net` run from the repository root. The checker runs in-process
(`netc.runtime.cli.main`), so the whole folder checks in about a second.

    NETC_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_errors.py   # rewrite the snapshots

then read every changed `.expected` as a user would before committing it: the caret under
the offending token, a message that stands alone, a hint where one helps.

`ok_*.net` in the same folder are valid specs written with CRLF, CR, tabs or a BOM: they must
check fine. A test marked xfail(strict=True) describes the wanted behaviour for a known
product bug; its reason says what is wrong and where (none are open now).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import ERROR_HEADER, ROOT, run_cli, run_python

BROKEN = ROOT / "tests" / "broken"
UPDATE = os.environ.get("NETC_UPDATE_SNAPSHOTS") == "1"

CASES = sorted(p.stem for p in BROKEN.glob("*.net") if not p.stem.startswith("ok_"))
VALID_VARIANTS = sorted(p.stem for p in BROKEN.glob("ok_*.net"))


def check_json(path) -> tuple[int, dict]:
    rc, out, err = run_cli("check", path, "--json")
    assert "Traceback" not in out + err
    return rc, json.loads(out)


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch):
    """Snapshots name files as `tests/broken/NAME.net`, so run from the repository root."""
    monkeypatch.chdir(ROOT)


def spec(name: str) -> str:
    return f"tests/broken/{name}.net"


# ---- the snapshot folder -----------------------------------------------------------------


def test_folder_has_enough_cases():
    assert len(CASES) >= 30
    missing = [n for n in CASES if not (BROKEN / f"{n}.expected").exists() and not UPDATE]
    assert not missing, f"no snapshot for {missing}; run with NETC_UPDATE_SNAPSHOTS=1"


@pytest.mark.parametrize("name", CASES)
def test_snapshot(name):
    rc, out, err = run_cli("check", spec(name))
    assert "Traceback" not in out + err
    assert "internal error" not in err
    assert out == ""
    snapshot = BROKEN / f"{name}.expected"
    if UPDATE:
        snapshot.write_bytes(err.encode("utf-8"))
    else:
        assert err == snapshot.read_bytes().decode("utf-8")
    assert rc == 1
    lines = err.splitlines()
    assert ERROR_HEADER.match(lines[0]), lines[0]
    assert re.fullmatch(r"\d+ errors? in tests/broken/" + re.escape(name) + r"\.net", lines[-1])


@pytest.mark.parametrize("name", [n for n in CASES if n != "too_many_layers"])  # slow: 1 s
def test_json_agrees_with_text(name):
    """--json reports the same errors, at the same places, as the text output."""
    rc, data = check_json(spec(name))
    assert rc == 1
    assert data["errors"], data
    _, _, err = run_cli("check", spec(name))
    headers = [ERROR_HEADER.match(line) for line in err.splitlines()]
    places = [(int(m["line"]), int(m["col"]), m["msg"]) for m in headers if m]
    assert places == [(e["line"], e["col"], e["message"]) for e in data["errors"]]
    for e in data["errors"]:
        assert re.fullmatch(r"E[1-4]\d\d", e["code"]), e


@pytest.mark.parametrize("name", VALID_VARIANTS)
def test_line_ending_and_tab_variants_check_fine(name):
    rc, data = check_json(spec(name))
    assert rc == 0, data
    assert data["net"] == "ok"
    assert (data["params"], data["state"], data["macs"]) == (3022, 80, 436424)
    assert data["output"] == [10]
    assert len(data["layers"]) == 18
    assert data["warnings"] == []
    lines = {layer["name"]: layer["line"] for layer in data["layers"]}
    # line numbers survive CRLF / CR-only endings: the softmax head is on line 15
    assert lines["softmax_1"] == 15
    assert lines["block_1/conv_1"] == 6


# ---- the intent of each mistake, without opening the snapshots --------------------------

# name, code, line, col, a fragment of the message, a fragment of the help ("" = not checked)
KEY_FIELDS = [
    ("unknown_layer", "E210", 2, 25, "unknown layer 'maxpol'", "did you mean maxpool?"),
    ("conv_too_big", "E301", 2, 1, "(4 + 2*0 - 5)/1 + 1 = 0", "p=2"),
    ("concat_mismatch", "E305", 2, 1, "branch 2 (line 4) gives 26x26x8", "p=same"),
    ("recursive_def", "E212", 3, 12, "def 'a' calls itself (a -> b -> a)", "repeat"),
    ("dropout_both", "E301", 2, 10, "exactly one of keep=P", ""),
    ("bad_split_sum", "E403", 4, 3, "0.8 + 0.1 + 0.2 = 1.1", "split 0.8 0.1 0.1"),
    ("unknown_train_key", "E401", 4, 3, "unknown train setting 'epoch'", "did you mean epochs?"),
    ("unclosed_brace", "E103", 3, 30, "a '{' is never closed", "add the missing '}'"),
    ("comma_args", "E103", 2, 9, "unexpected ','", "not commas"),
    ("missing_arrow", "E207", 2, 14, "unexpected 'relu' after conv", "'->' missing"),
    ("def_wrong_arg_count", "E213", 3, 1, "block takes 1 argument (n) but 2 were given", ""),
    ("duplicate_name", "E208", 2, 27, "layer name 'hidden' is used twice", ""),
    ("residual_no_integer_stride", "E304", 2, 1, "10x10x4 into 7x7x8", "shortcut"),
    ("residual_rank_change", "E304", 2, 1, "cannot change the rank", "shortcut"),
    ("not_utf8", "E101", 2, 19, "not UTF-8 text (byte 0xe9)", "UTF-8"),
    ("empty", "E217", 1, 1, "missing 'input'", "input 28x28x1"),
    ("huge_number", "E104", 2, 4, "number too large", ""),
    ("bad_padding_word", "E206", 2, 14, "conv p=sme", "did you mean same?"),
    ("loss_mismatch", "E407", 4, 3, "needs the net to end in softmax", "softmax N"),
    ("conv_after_fc", "E301", 2, 10, "conv needs an HxWxC image", "before fc"),
    ("unknown_optimizer", "E405", 4, 13, "unknown optimizer 'adma'", "did you mean adam?"),
    ("unknown_data", "E405", 4, 8, "unknown data set 'mons'", "did you mean moons?"),
    ("repeat_zero", "E214", 2, 8, "repeat count must be a positive integer, got 0", ""),
    ("second_chain", "E216", 4, 1, "one model chain", "'->'"),
    ("def_shadows_layer", "E221", 2, 5, "name of a built-in layer", ""),
    ("division_by_zero", "E205", 2, 31, "division by zero", ""),
    ("pool_pad_too_big", "E301", 2, 1, "more than half the window", ""),
    ("shortcut_mismatch", "E303", 2, 45, "body gives 8x8x8 but the shortcut gives 8x8x4", ""),
    ("unknown_layer_key", "E202", 2, 6, "fc has no argument 'bais'", "did you mean bias?"),
    ("missing_required_arg", "E201", 2, 1, "conv needs c=", "c=16"),
    ("arg_given_twice", "E203", 2, 10, "'f' is given twice", ""),
    ("float_for_int", "E206", 2, 4, "expects a whole number", "write 2"),
    ("def_without_parens", "E209", 3, 1, "'block' is a def", "block(...)"),
    ("layer_with_parens", "E211", 2, 9, "'relu' is a layer, not a def", ""),
    ("input_twice", "E215", 2, 1, "'input' is declared twice", ""),
    ("input_zero", "E219", 1, 1, "got 0x28x1", ""),
    ("setting_twice", "E402", 5, 3, "'epochs' is set twice (first at line 4)", ""),
    ("optimizer_no_name", "E404", 4, 3, "optimizer needs a name first", "optimizer gd"),
    ("empty_data_path", "E406", 4, 8, "data path is empty", ""),
    ("train_dev_out_of_range", "E206", 5, 13, "train_dev 1.5: expects a fraction between 0 "
     "and 1", ""),
    ("colon_for_equals", "E102", 2, 7, "unexpected character ':'", "use '='"),
    ("nul_byte", "E102", 2, 13, "U+0000", ""),
    ("too_many_layers", "E220", 2, 1, "more than 100,000 layers", ""),
    ("crlf_error", "E210", 3, 4, "unknown layer 'maxpol'", "did you mean maxpool?"),
    ("tab_error", "E210", 3, 5, "unknown layer 'maxpol'", "did you mean maxpool?"),
]


@pytest.mark.parametrize(("name", "code", "line", "col", "message", "help"), KEY_FIELDS,
                         ids=[case[0] for case in KEY_FIELDS])
def test_key_fields(name, code, line, col, message, help):
    rc, data = check_json(spec(name))
    assert rc == 1
    first = data["errors"][0]
    assert (first["code"], first["line"], first["col"]) == (code, line, col), first
    assert message in first["message"]
    assert help in first.get("help", "")


def test_caret_sits_under_the_token_with_tabs_and_crlf():
    for name in ("tab_error", "crlf_error", "unknown_layer"):
        _, _, err = run_cli("check", spec(name))
        source_line, caret_line = err.splitlines()[1:3]
        text = source_line.split(" | ", 1)[1]
        carets = caret_line.split(" | ", 1)[1]
        start = carets.index("^")
        assert text[start:start + len("maxpol")] == "maxpol", (text, carets)
        assert carets.strip() == "^" * len("maxpol")


def test_size_arithmetic_is_shown():
    _, _, err = run_cli("check", spec("conv_too_big"))
    assert "conv f=5 does not fit a 4x4x8 input: (4 + 2*0 - 5)/1 + 1 = 0" in err
    assert "^^^^^^^^^^^^^ output would be 0 rows" in err


# ---- the command line ----------------------------------------------------------------------


def stride_warning_spec(tmp_path) -> Path:
    path = tmp_path / "strided.net"
    path.write_text("input 8x8x1\nconv f=3 s=2 c=4 -> relu\n")
    return path


def test_warnings_do_not_fail_the_check(tmp_path):
    path = stride_warning_spec(tmp_path)
    rc, data = check_json(str(path))
    assert rc == 0
    assert data["output"] == [3, 3, 4]
    assert data["warnings"], data
    for w in data["warnings"]:
        assert w["code"] == "W301"
        assert (w["line"], w["col"]) == (2, 1)
        assert "(8 + 2*0 - 3) = 5 is not divisible by s=2" in w["message"]
    rc, out, err = run_cli("check", str(path))
    assert rc == 0
    assert f"{path}:2:1: warning: conv f=3 s=2" in err
    assert "error" not in err
    assert "conv_1" in out


def test_warnings_ride_along_with_errors_in_json(tmp_path):
    path = tmp_path / "both.net"
    path.write_text("input 8x8x1\nconv f=3 s=2 c=4 -> reluu\n")
    rc, data = check_json(str(path))
    assert rc == 1
    assert [e["code"] for e in data["errors"]] == ["E210"]
    assert {w["code"] for w in data["warnings"]} == {"W301"}


def test_nonexistent_file_exits_2_with_one_line():
    rc, out, err = run_cli("check", "tests/broken/no_such_file.net")
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("netc: error: cannot read 'tests/broken/no_such_file.net'")


def test_no_file_argument_exits_2():
    rc, out, err = run_cli("check")
    assert rc == 2
    assert err.startswith("netc: error:") and "file" in err
    assert "Traceback" not in err


def test_no_command_exits_2():
    rc, _, err = run_cli()
    assert rc == 2
    assert "usage" in err


def test_directory_as_file_exits_2():
    rc, out, err = run_cli("check", "tests/broken")
    assert rc == 2
    assert err.count("\n") == 1
    assert err.startswith("netc: error: cannot read 'tests/broken'")


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_stdin_dash_checks_a_valid_spec(monkeypatch):
    _stdin(monkeypatch, (BROKEN / "ok_crlf.net").read_bytes())
    rc, out, err = run_cli("check", "-", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["params"] == 3022


def test_stdin_dash_reports_errors(monkeypatch):
    _stdin(monkeypatch, (BROKEN / "unknown_layer.net").read_bytes())
    rc, out, err = run_cli("check", "-")
    assert rc == 1
    assert ":2:25: error: unknown layer 'maxpol'" in err.splitlines()[0]
    assert "Traceback" not in err


def test_stdin_errors_are_labelled_stdin(monkeypatch):
    _stdin(monkeypatch, (BROKEN / "unknown_layer.net").read_bytes())
    _, _, err = run_cli("check", "-")
    assert err.startswith("<stdin>:2:25: error:")


def test_real_entry_point_never_prints_a_traceback():
    env = {k: v for k, v in os.environ.items() if k != "NETC_DEBUG"}
    for name in ("unknown_layer", "not_utf8", "nested_too_deep"):
        proc = run_python("-m", "netc", "check", spec(name), cwd=ROOT, env=env, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        assert proc.stderr == (BROKEN / f"{name}.expected").read_text(encoding="utf-8")


# ---- once-known product bugs: the wanted behaviour ----------------------------------------


def _errors(path) -> list[dict]:
    rc, data = check_json(str(path))
    assert rc == 1, data
    return data["errors"]


def test_expression_error_is_not_followed_by_needs_value():
    errors = _errors(spec("unknown_name_in_expr"))
    assert [e["code"] for e in errors] == ["E204"]


def test_missing_arrow_across_lines_is_one_error():
    errors = _errors(spec("second_chain_layer"))
    assert len(errors) == 1


def test_two_settings_on_one_line():
    errors = _errors(spec("settings_on_one_line"))
    assert len(errors) == 1
    assert "->" not in errors[0].get("help", "")
    assert "line" in errors[0].get("help", "")


def test_setting_messages_do_not_say_value(tmp_path):
    errors = _errors(spec("batch_bad"))
    path = tmp_path / "normalize.net"
    path.write_text("input 2\nfc 4 -> sigmoid 1\ntrain {\n  normalize\n}\n")
    errors += _errors(path)
    for e in errors:
        assert "value" not in e["message"] + e.get("help", ""), e


def test_split_with_four_values():
    errors = _errors(spec("split_too_many"))
    assert "one positional" not in errors[0]["message"]
    assert re.search(r"\btakes (3|three) ", errors[0]["message"]), errors[0]


def test_mistake_in_def_body_reported_once():
    errors = _errors(spec("def_error_called_twice"))
    assert len(errors) == 1


def test_shape_error_in_def_names_the_call():
    _, _, err = run_cli("check", spec("def_body_too_small"))
    assert "line 5" in err


def test_form_feed_does_not_shift_the_shown_line(tmp_path):
    _, _, err = run_cli("check", spec("form_feed"))
    assert "fc 4 -> relu -> foo" in err.splitlines()[1]
    path = tmp_path / "ls.net"
    path.write_text("input 8 # a\u2028b\nfc 4 -> foo\n", encoding="utf-8")
    _, _, err = run_cli("check", str(path))
    assert "fc 4 -> foo" in err.splitlines()[1]


def test_deep_def_chain_is_not_an_internal_error(tmp_path):
    depth = 1000
    text = "input 8\n" + "".join(f"def d{i}(n) {{ d{i + 1}(n) }}\n" for i in range(depth))
    text += f"def d{depth}(n) {{ fc n }}\nd0(3)\n"
    path = tmp_path / "deep_defs.net"
    path.write_text(text)
    rc, out, err = run_cli("check", str(path), "--json")
    assert rc in (0, 1), err
    assert "internal error" not in err


def test_too_deep_points_at_the_nesting():
    errors = _errors(spec("nested_too_deep"))
    assert errors[0]["line"] > 1


@pytest.mark.parametrize("text", [
    "input 8\nfc " + "9" * 44 + "\n",
    "input " + "9" * 30 + "\nfc 2\n",
    "input 8x8x1\nconv f=" + "9" * 25 + " p=" + "9" * 25 + " c=1\n",
    "input 2\nfc 1\ntrain {\n  seed " + "9" * 25 + "\n}\n",
])
def test_absurd_numbers_are_errors(text, tmp_path):
    path = tmp_path / "absurd.net"
    path.write_text(text)
    rc, data = check_json(str(path))
    assert rc == 1, data


def test_missing_input_points_at_the_top():
    errors = _errors(spec("missing_input"))
    assert (errors[0]["line"], errors[0]["col"]) == (1, 1)


def test_positional_expression_hint():
    errors = _errors(spec("positional_expression"))
    assert "units=" in errors[0].get("help", "")


def test_unicode_arrow_hint():
    errors = _errors(spec("unicode_arrow"))
    assert "->" in errors[0].get("help", "")


def test_unclosed_string_hint():
    errors = _errors(spec("unclosed_string"))
    assert "quote" in errors[0]["message"] + errors[0].get("help", "")


def test_negative_setting_is_a_range_error():
    errors = _errors(spec("negative_setting"))
    assert errors[0]["code"] == "E206"


def test_empty_branch_brace_hint():
    errors = _errors(spec("empty_concat"))
    assert "closes nothing" not in errors[0].get("help", "")


def test_unclosed_paren_hint():
    errors = _errors(spec("unclosed_paren"))
    assert ")" in errors[0].get("help", "") + errors[0]["message"]
    assert "both sides" not in errors[0].get("help", "")


def test_spaced_dims_hint():
    errors = _errors(spec("input_spaced_dims"))
    assert "28x28" in errors[0].get("help", "")


def test_repeat_unknown_name():
    errors = _errors(spec("repeat_unknown_name"))
    assert errors[0]["code"] == "E204"


def test_default_order_hint():
    errors = _errors(spec("def_default_order"))
    assert "none here" not in errors[0].get("help", "")


def test_expansion_limit_is_found_without_expanding(monkeypatch, tmp_path):
    import netc.compiler.check as check_module

    calls = 0
    real_bind = check_module.bind

    def counting_bind(*args, **kwargs):
        nonlocal calls
        calls += 1
        return real_bind(*args, **kwargs)

    monkeypatch.setattr(check_module, "bind", counting_bind)
    path = tmp_path / "huge_repeat.net"
    path.write_text("input 8\nrepeat 99999999999 { fc 8 }\n")
    errors = _errors(path)
    assert [e["code"] for e in errors] == ["E220"]
    assert calls < 1000, f"{calls} layers bound before giving up"


# ---- the fixes above keep what worked -----------------------------------------------------


def _layers(text: str) -> list[str]:
    from netc.compiler.check import check_source
    return [leaf.name for leaf in check_source(text).leaves()]


def test_repeat_still_expands_with_the_same_names():
    assert _layers("input 8\nfc 8 -> repeat 3 { fc 8 -> relu } -> fc 2\n") == [
        "fc_1", "fc_2", "relu_1", "fc_3", "relu_2", "fc_4", "relu_3", "fc_5"]
    assert _layers("input 4x4x2\nrepeat 2 { residual { conv f=1 c=4 } }\n") == [
        "residual_1/conv_1", "residual_1/projection", "residual_2/conv_1"]
    assert _layers("input 8\ndef b(n) { repeat n { fc n } }\nb(2) -> b(1)\n") == [
        "b_1/fc_1", "b_1/fc_2", "b_2/fc_1"]


def test_expansion_limit_counts_the_layers_before_the_repeat(monkeypatch, tmp_path):
    import netc.compiler.check as check_module

    monkeypatch.setattr(check_module, "MAX_LAYERS", 10)
    path = tmp_path / "limit.net"
    path.write_text("input 8\nrepeat 5 { fc 2 -> relu }\n")  # exactly 10
    assert check_json(str(path))[0] == 0
    path.write_text("input 8\nfc 2 -> repeat 5 { fc 2 -> relu }\n")  # 11
    errors = _errors(path)
    assert [(e["code"], e["line"], e["col"]) for e in errors] == [("E220", 2, 9)]
    path.write_text("input 8\nrepeat 3 { repeat 4 { relu } }\n")  # 12, the outer repeat
    errors = _errors(path)
    assert [(e["code"], e["line"], e["col"]) for e in errors] == [("E220", 2, 1)]


def test_repeat_with_a_mistake_reports_it_not_the_limit(tmp_path):
    path = tmp_path / "huge_bad.net"
    path.write_text("input 8\nrepeat 99999999999 { reluu }\n")
    assert [e["code"] for e in _errors(path)] == ["E210"]


def test_stray_word_ends_a_layer_but_not_its_own_mistakes(tmp_path):
    path = tmp_path / "stray.net"
    path.write_text("input 8x8x1\nconv 3 c=8 relu f=2\n")
    errors = _errors(path)
    assert [e["code"] for e in errors] == ["E201", "E207", "E207"]
    assert "'->' missing before relu" in errors[2]["help"]


def test_def_errors_from_different_calls_stay_apart(tmp_path):
    path = tmp_path / "two_calls.net"
    path.write_text("input 3x3x1\ndef b(f) { conv f=f c=2 }\nconcat { b(5) | b(7) }\n")
    rc, out, err = run_cli("check", str(path))
    assert rc == 1
    assert err.count("error: conv f=5") == 1 and err.count("error: conv f=7") == 1
    assert "= note: in the call b(f=5) at line 3, column 10" in err
    _, data = check_json(str(path))
    assert [e["notes"] for e in data["errors"]] == [
        ["in the call b(f=5) at line 3, column 10"], ["in the call b(f=7) at line 3, column 17"]]


def test_the_same_def_error_lists_every_call(tmp_path):
    path = tmp_path / "many_calls.net"
    path.write_text("input 8\ndef b(c) { fc c -> reluu }\nb(1) -> b(2) -> b(3) -> b(4) -> b(5)\n")
    errors = _errors(path)
    assert len(errors) == 1
    assert errors[0]["notes"] == [
        "in the call b(c=1) at line 3, column 1",
        "and in the call b(c=2) at line 3, column 9",
        "and in the call b(c=3) at line 3, column 17",
        "and in the call b(c=4) at line 3, column 25",
        "and in 1 more call"]


def test_defaults_see_only_earlier_parameters(tmp_path):
    path = tmp_path / "later.net"
    path.write_text("input 8\ndef b(k=n*2, n=1) { fc units=k }\nb(n=3)\n")
    errors = _errors(path)
    assert [e["code"] for e in errors] == ["E204"]
    assert "def b(n=1, k=n*2)" in errors[0]["help"]
    path.write_text("input 8\ndef b(n=1, k=n*2) { fc units=k }\nb(n=3)\n")
    rc, data = check_json(str(path))
    assert rc == 0 and data["output"] == [6]


def test_layer_called_like_a_def_is_shown_as_a_layer(tmp_path):
    path = tmp_path / "parens.net"
    path.write_text("input 8\ndef h(n) { fc(2*n, bias=false) }\nh(3)\n")
    errors = _errors(path)
    assert errors[0]["help"] == "write it without parentheses: fc units=2*n bias=false"


@pytest.mark.parametrize(("text", "code", "message"), [
    ("input 8\nfc -4\n", "E206", "fc -4: expects a positive integer"),
    ("input 2\nfc 1\ntrain {\n  split 1.2 -0.1 -0.1\n}\n", "E206", "split -0.1"),
    ("input 2\nfc 1\ntrain {\n  l2 -1e-3\n}\n", "E206", "l2 -0.001: expects a number >= 0"),
])
def test_negative_positional_values_are_range_errors(text, code, message, tmp_path):
    path = tmp_path / "negative.net"
    path.write_text(text)
    errors = _errors(path)
    assert errors[0]["code"] == code and message in errors[0]["message"], errors


def test_minus_after_a_key_value_continues_its_expression(tmp_path):
    path = tmp_path / "minus.net"
    path.write_text("input 8x8x1\ndef b(c) { conv f=3 c=c -1 }\nb(5)\n")
    rc, data = check_json(str(path))
    assert rc == 0 and data["output"] == [6, 6, 4]


def test_deep_but_allowed_nesting_checks(tmp_path):
    path = tmp_path / "deep_ok.net"
    path.write_text("input 8\n" + "residual {\n" * 100 + "fc 8\n" + "}\n" * 100)
    assert check_json(str(path))[0] == 0
    path.write_text("input 8\nfc units=" + "-" * 101 + "1\n")
    errors = _errors(path)
    assert (errors[0]["code"], errors[0]["col"]) == ("E105", 110)


# ---- warnings from the calls of a def --------------------------------------------------------
# A layer in a def's body that warns in every call is one warning, with a note per further
# call, as an error is. The number of warnings ONE strided layer makes (today one for its rows
# and one for its columns) is read from a spec with a single call, not assumed.

DOWN = "def down(c) { conv f=1 s=2 c=c }\n"


def _warnings(text: str):
    from netc.compiler.check import check_source

    return list(check_source(text, "w.net").warnings)


def test_a_warning_repeated_by_each_call_is_folded_into_one(tmp_path):
    per_layer = len(_warnings("input 56x56x1\n" + DOWN + "down(4)\n"))
    assert per_layer >= 1
    text = "input 56x56x1\n" + DOWN + "down(4) -> down(8) -> down(16)\n"  # on 56, 28 and 14
    warnings = _warnings(text)
    assert len(warnings) == per_layer
    for w in warnings:
        assert "on 56" in w.message and "55 is not divisible by s=2" in w.message
        first, second, third = w.notes
        assert first == "in the call down(c=4) at line 3, column 1"
        assert second.startswith("and in the call down(c=8) at line 3, column 12: …")
        assert "28" in second and "= 27" in second and "56" not in second
        assert third.startswith("and in the call down(c=16) at line 3, column 23: …")
        assert "14" in third and "= 13" in third
    path = tmp_path / "down.net"
    path.write_text(text)
    rc, data = check_json(str(path))  # JSON: one entry per folded warning
    assert rc == 0 and [w["message"] for w in data["warnings"]] == [w.message for w in warnings]
    rc, out, err = run_cli("check", str(path))
    assert rc == 0 and err.count(": warning: ") == per_layer
    assert err.count("= note: and in the call down(c=8)") == per_layer


def test_warnings_of_a_stage_of_resnet50_fold_across_its_calls():
    path = ROOT / "examples" / "zoo" / "resnet50.net"
    one_call = path.read_text().replace("-> stage(256, 6, 2) as layer3", "") \
        .replace("-> stage(512, 3, 2) as layer4", "")
    warnings = _warnings(path.read_text())
    assert len(warnings) == len(_warnings(one_call)) >= 1
    for w in warnings:
        assert w.span.line == 41  # the 1x1 stride-2 projection in bottleneck_down
        assert [note.split(":")[0] for note in w.notes[2:]] == [
            "and in the call stage(w=256, blocks=6, s=2) at line 54, column 4",
            "and in the call stage(w=512, blocks=3, s=2) at line 55, column 4"]


def test_identical_warnings_of_several_calls_fold_with_plain_notes():
    branches = " | ".join(f"down({c})" for c in range(1, 6))
    warnings = _warnings("input 8x8x1\n" + DOWN + f"concat {{ {branches} }}\n")
    per_layer = len(_warnings("input 8x8x1\n" + DOWN + "down(1)\n"))
    assert len(warnings) == per_layer
    for w in warnings:
        assert w.notes == ("in the call down(c=1) at line 3, column 10",
                           "and in the call down(c=2) at line 3, column 20",
                           "and in the call down(c=3) at line 3, column 30",
                           "and in the call down(c=4) at line 3, column 40",
                           "and in 1 more call")


def test_warnings_within_one_call_or_outside_defs_are_not_folded():
    per_layer = len(_warnings("input 56x56x1\n" + DOWN + "down(4)\n"))
    # a repeat outside any def: one warning per copy, as before (56 and 28)
    top = _warnings("input 56x56x1\nrepeat 2 { conv f=1 s=2 c=4 }\n")
    assert len(top) == 2 * per_layer and not any(w.notes for w in top)
    # a repeat in a def: the k-th copy of one call folds with the k-th copy of the other;
    # call 1 sees 56 and 28, call 2 sees 14 (which warns) and 7 (which does not)
    twice = "def down2(c) { repeat 2 { conv f=1 s=2 c=c } }\n"
    warnings = _warnings("input 56x56x1\n" + twice + "down2(4) -> down2(8)\n")
    assert len(warnings) == 2 * per_layer
    for w in warnings[:per_layer]:
        assert "on 56" in w.message and len(w.notes) == 2 and "on 14" in w.notes[1]
    for w in warnings[per_layer:]:
        assert "on 28" in w.message and w.notes == ("in the call down2(c=4) at line 3, column 1",)


@pytest.mark.parametrize("first, other, shown", [
    ("conv on 56 rows: 55 is odd", "conv on 28 rows: 27 is odd", "…on 28 rows: 27…"),
    ("56 rows", "28 rows", "28…"),
    ("a b 1", "a b 2", "…b 2"),
    ("x 1 y", "x 1 y z", "…y z"),
    ("7", "8", "8"),
])
def test_what_differs_between_two_warnings(first, other, shown):
    from netc.compiler.call_diagnostics import what_differs

    assert what_differs(first, other) == shown


def test_an_internal_error_is_two_lines_whatever_the_exception_says(monkeypatch, capsys):
    """A bug's exception (JAX's can hold an array over many lines) is told in one line, its
    first, and a second saying how to get the traceback; exit 3."""
    from netc.runtime import cli

    def broken(args):
        raise AssertionError("arrays differ:\n[[1. 2.]\n [3. 4.]]")
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.delenv("NETC_DEBUG", raising=False)
    args = parser.parse_args(["check", "x.net"])
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    args.run = broken
    assert cli.main(["check", "x.net"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "netc: internal error: AssertionError: arrays differ: ...",
        "  (this is a bug in netc; rerun with NETC_DEBUG=1 for the traceback)"]
