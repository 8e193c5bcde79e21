"""Fuzzing `netc check`: mutated valid specs must give a clean error or a clean pass.

Start from valid specs (the inline ones below, plus the acceptance corpus in ../shared/specs
when it is there: conftest finds it; test_shared_corpus_is_among_the_seeds skips without it),
mutate them (delete, duplicate or swap tokens, delete a character range, insert tokens of the
language or raw bytes: NUL, invalid UTF-8, CR, tabs) and check the contract of LANGUAGE.md
section 6 on every result:

- `main(["check", path])` returns 0 or 1: it never raises and never returns 3 (internal error);
- nothing on stderr says "Traceback" or "internal error";
- on exit 1 the first stderr line is `FILE:LINE:COL: error: MESSAGE`, LINE within the file,
  and `--json` reports the same first error at the same place.

By default the examples are derandomized (the same ~300 every run, ~15 s) so the suite is
stable; `NETC_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py` explores further with
fresh random examples.
"""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest
from conftest import ERROR_HEADER, SHARED_SPECS, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netc.compiler.check import check_source

INLINE_SEEDS = [
    # def with a default, repeat, residual with projection, concat, train section
    """\
net mixed
input 32x32x3

def block(c, s=1) {
  conv f=3 s=s p=same c=c -> batchnorm -> relu
}

block(16) -> repeat 2 { block(16) }
-> residual { block(32, s=2) -> conv f=3 p=same c=32 } -> relu
-> concat {
  conv f=1 c=8
| conv f=1 c=8 -> conv f=3 p=same c=16
| maxpool f=3 s=1 p=same -> conv f=1 c=8
}
-> globalavgpool -> dropout keep=0.8 -> softmax 10

train {
  data digits
  split 0.8 0.1 0.1
  normalize standard
  optimizer adamw lr=0.001 wd=0.01
  schedule exponential rate=0.9 every=2
  batch 32
  epochs 3
  l2 0.0001
  init he
  loss cross_entropy
  seed 7
}
""",
    # residual with an explicit shortcut, aliases, arithmetic in a def
    """\
input 28x28x1
def down(c) { conv f=3 s=2 p=1 c=2*c -> relu }
conv f=5 p=same c=8 as stem
-> residual { down(8) } shortcut { conv f=1 s=2 c=16 } -> relu
-> maxpool f=2 -> flatten -> fc 64 bias=false -> bn -> leaky_relu a=0.1
-> sigmoid 1
train {
  data "data/cats.npz" label=y
  batch full
  optimizer momentum lr=0.01 beta=0.9
}
""",
    # the vector models of course 1
    "input 2\nfc 4 -> tanh -> sigmoid 1\ntrain {\n  data moons n=200 noise=0.2\n"
    "  init random scale=0.01\n  optimizer gd lr=1.2\n  epochs 100\n}\n",
    "# comment only line\ninput 12288\nfc 20 -> relu -> fc 7 -> relu -> fc 5 -> relu\n"
    "-> sigmoid 1 # head\n",
]


# the acceptance corpus in ../shared/specs joins the seeds when it is there
CORPUS_SEEDS = [p.read_text(encoding="utf-8") for p in sorted(SHARED_SPECS.glob("*.net"))]
SEEDS = INLINE_SEEDS + CORPUS_SEEDS

VOCABULARY = [
    "->", "{", "}", "|", "(", ")", "=", ",", "+", "-", "*", "//", "#", '"', "'", ":", ";",
    "0", "1", "2", "3", "7", "-1", "0.5", "1e-3", "1e999", "99999999999999999999",
    "1" + "0" * 40, "28x28x1", "0x0", "1x7", "3x3x3x3", "x",
    "net", "input", "def", "train", "residual", "shortcut", "concat", "repeat", "as",
    "conv", "fc", "dense", "maxpool", "avgpool", "globalavgpool", "flatten", "relu", "tanh",
    "sigmoid", "softmax", "dropout", "batchnorm", "bn", "leaky_relu", "block", "down",
    "f=3", "c=8", "s=2", "p=same", "p=valid", "keep=0.5", "rate=0.5", "c=c", "c=2*c", "c=n//0",
    "same", "valid", "true", "false", "full", '"data/x.npz"', '""',
    "data", "split", "batch", "epochs", "optimizer", "schedule", "l2", "init", "loss", "seed",
    "normalize", "adam", "moons", "digits",
    "\n", "\r\n", "\r", "\t", " ", "\n\n",
]
RAW_BYTES = [b"\x00", b"\xff", b"\xe9", b"\x80", b"\xc3", b"\r", b"\t", b"\x0c", b"\x0b",
             b"\xc2\x85", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b"\xe2\x86\x92", b"\x1b[31m"]

_TOKEN = re.compile(
    r'->|//|"[^"\n]*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?'
    r"(?:x[0-9]+)*|\r\n|\s|.", re.S)


def tokenize(text: str) -> list[str]:
    """Lossless: ''.join(tokenize(t)) == t. Whitespace characters are tokens of their own."""
    return _TOKEN.findall(text)


# ---- mutations --------------------------------------------------------------------------------


def _solid(tokens: list[str]) -> list[int]:
    return [i for i, t in enumerate(tokens) if not t.isspace()] or [0]


@st.composite
def token_mutation(draw, tokens: list[str]) -> list[str]:
    tokens = list(tokens)
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "insert_bare"]))
    solid = _solid(tokens)
    i = draw(st.sampled_from(solid))
    if op == "delete":
        del tokens[i]
    elif op == "duplicate":
        tokens.insert(i, tokens[i] + " ")
    elif op == "swap":
        j = draw(st.sampled_from(solid))
        tokens[i], tokens[j] = tokens[j], tokens[i]
    else:
        word = draw(st.sampled_from(VOCABULARY))
        at = draw(st.integers(0, len(tokens)))
        tokens.insert(at, word if op == "insert_bare" else f" {word} ")
    return tokens


@st.composite
def token_mutants(draw) -> bytes:
    tokens = tokenize(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        tokens = draw(token_mutation(tokens))
    return "".join(tokens).encode("utf-8")


@st.composite
def range_deletions(draw) -> bytes:
    text = draw(st.sampled_from(SEEDS))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 40)))
    return (text[:start] + text[end:]).encode("utf-8")


@st.composite
def byte_insertions(draw) -> bytes:
    data = draw(st.sampled_from(SEEDS)).encode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        chunk = draw(st.one_of(st.sampled_from(RAW_BYTES), st.binary(min_size=1, max_size=4)))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + chunk + data[at:]
    return data


@st.composite
def vocabulary_soup(draw) -> bytes:
    """Specs made only of the language's own tokens: mostly nonsense, some near misses."""
    head = draw(st.sampled_from(["", "input 8\n", "input 28x28x1\n", "input 8x8x1\nconv f=3 c=4"]))
    words = draw(st.lists(st.sampled_from(VOCABULARY), max_size=30))
    return (head + " ".join(words)).encode("utf-8")


# ---- the property -----------------------------------------------------------------------------

def assert_clean_check(data: bytes, path: Path) -> None:
    path.write_bytes(data)
    rc, out, err = run_cli("check", path)
    assert rc in (0, 1), (rc, err)
    assert "Traceback" not in out + err
    assert "internal error" not in err
    if rc == 0:
        return
    first = err.splitlines()[0] if err else ""
    match = ERROR_HEADER.match(first)
    assert match, f"first stderr line is not FILE:LINE:COL: error: ...\n{err}"
    lines = len(re.split(rb"\r\n|\r|\n", data))
    line, col = int(match["line"]), int(match["col"])
    assert 1 <= line <= lines + 1, (line, lines, err)
    assert col >= 1
    assert re.search(r"^\d+ errors? in ", err.splitlines()[-1]), err

    rc_json, out_json, err_json = run_cli("check", path, "--json")
    assert rc_json == 1, err_json
    errors = json.loads(out_json)["errors"]
    assert (errors[0]["line"], errors[0]["col"], errors[0]["message"]) == (
        line, col, match["msg"])
    places = [(e["line"], e["col"]) for e in errors]
    assert places == sorted(places), "errors must come sorted by position"
    assert all(1 <= e["line"] <= lines + 1 and e["col"] >= 1 for e in errors), errors


N = int(os.environ.get("NETC_FUZZ_EXAMPLES", "0"))
FUZZ = settings(deadline=2000, derandomize=N == 0,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def fuzz(examples: int):
    return settings(FUZZ, max_examples=N or examples)


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzz.net"


def test_seeds_are_valid(spec_path):
    for text in SEEDS:
        spec_path.write_text(text, encoding="utf-8")
        rc, _, err = run_cli("check", spec_path, "--json")
        assert rc == 0, (text, err)


def test_shared_corpus_is_among_the_seeds(shared_specs):
    corpus = sorted(shared_specs.glob("*.net"))
    assert corpus, f"no .net files in {shared_specs}"
    for path in corpus:
        assert path.read_text(encoding="utf-8") in SEEDS, path.name


def test_tokenizer_is_lossless():
    for text in SEEDS:
        assert "".join(tokenize(text)) == text


@fuzz(130)
@given(data=token_mutants())
def test_token_mutations(data, spec_path):
    assert_clean_check(data, spec_path)


@fuzz(40)
@given(data=range_deletions())
def test_range_deletions(data, spec_path):
    assert_clean_check(data, spec_path)


@fuzz(70)
@given(data=byte_insertions())
def test_byte_insertions(data, spec_path):
    assert_clean_check(data, spec_path)


@fuzz(60)
@given(data=vocabulary_soup())
def test_vocabulary_soup(data, spec_path):
    assert_clean_check(data, spec_path)


# ---- huge shapes are arithmetic, not allocation ---------------------------------------------


def test_huge_input_checks_exactly_without_allocating(spec_path):
    text = ("input 100000x100000x3\n"
            "conv f=3 c=8 -> maxpool f=2 -> globalavgpool -> softmax 10\n")
    check_source(text, "warm-up.net")  # the grammar's tables are built once per process
    tracemalloc.start()
    net = check_source(text, "huge.net")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000  # bytes: shapes are arithmetic; a 100000x100000x3 array is 120 GB
    conv_out = 100000 - 3 + 1
    assert net.input_shape == (100000, 100000, 3)
    assert [leaf.out_shape for leaf in net.leaves()] == [
        (conv_out, conv_out, 8), (conv_out // 2, conv_out // 2, 8), (8,), (10,)]
    assert net.params == 3 * 3 * 3 * 8 + 8 + 8 * 10 + 10 == 314
    assert net.macs == conv_out * conv_out * 8 * 3 * 3 * 3 + 8 * 10 == 2_159_913_600_944

    spec_path.write_text(text)
    rc, out, err = run_cli("check", spec_path, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert (data["params"], data["macs"]) == (314, 2_159_913_600_944)
    assert data["layers"][0]["output"] == [conv_out, conv_out, 8]
