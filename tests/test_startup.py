"""What keeps `netc check` quick to start (issue #2), checked for behaviour, not for time
(benchmarks/check_startup.py measures the time):

- the LALR tables ship as dsl/grammar_tables.json, generated from grammar.lark: the file must
  be exactly what `python -m netc.dsl.build_tables` makes now (whatever the hash seed), and
  the parser loaded from it must parse and fail exactly like one built from the grammar;
- a missing, damaged or stale tables file only costs time: the parser is built instead;
- `netc check --json` imports neither rich nor JAX; the table comes out the same as rich
  renders it row by row.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from conftest import EXAMPLE_SPECS, EXAMPLES, ROOT, run_python
from lark import Lark, Token
from lark.exceptions import UnexpectedInput
from netc.dsl import build_tables, tables
from netc.dsl import parser as netc_parser

RESNET50 = EXAMPLES / "zoo" / "resnet50.net"
SPECS = EXAMPLE_SPECS + sorted((ROOT / "tests" / "broken").glob("*.net"))
EXTRA = [
    "", "\n\n", "net", "input", "input 28x28x1 -> fc 3", "fc 3 -> -> relu", "conv f=3 c=8 {",
    "residual { fc 4 } shortcut", "concat { fc 1 | fc 2 } as", "train {\n lr 0.1 0.2\n",
    "def f(a, b=2*3) { fc a -> fc b }\nf(1, b=-(4 // 2))", "repeat 3 { fc 2 } | x", "x = = 1",
    "train { seed -1 }", "fc 3 'quoted' \"s\" 1.5e3 .5 2x3x4", "conv f=3 ,", "}\n", "input 2\x00",
]


def shipped_tables() -> str:
    return (ROOT / "dsl" / tables.TABLES).read_text(encoding="utf-8")


def outcome(parser: Lark, text: str):
    """What parsing gives: the tree, or the error's class, place and expected terminals."""
    try:
        tree = parser.parse(text)
    except UnexpectedInput as exc:
        return (type(exc).__name__, exc.line, exc.column, sorted(getattr(exc, "expected", ())),
                str(getattr(exc, "token", "")))
    # flat, as some specs nest deeper than comparing trees recursively allows
    return [(t.data, sorted(vars(t.meta).items()),
             [(c.type, str(c), c.line, c.column) if isinstance(c, Token)
              else c if c is None else c.data for c in t.children])
            for t in tree.iter_subtrees_topdown()]


# ---- the shipped tables -------------------------------------------------------------------


def test_tables_file_matches_the_grammar():
    assert build_tables.generate(tables.read_grammar()) == shipped_tables(), (
        "dsl/grammar_tables.json is stale: run python -m netc.dsl.build_tables")


@pytest.mark.parametrize("seed", ["1", "2"])
def test_generating_does_not_depend_on_the_hash_seed(seed):
    env = dict(os.environ, PYTHONHASHSEED=seed)
    out = run_python("-m", "netc.dsl.build_tables", "--check", env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout


def test_parser_is_loaded_from_the_tables_not_built(monkeypatch):
    def no_building(*args, **kwargs):
        raise AssertionError("the parser was built from the grammar")

    monkeypatch.setattr(tables, "build", no_building)
    parser = tables.lark_parser(netc_parser._LineBreaks())
    assert parser.parse("input 2\nfc 4 -> tanh").data == "start"


def test_loaded_parser_parses_and_fails_like_a_built_one():
    grammar = tables.read_grammar()
    loaded = tables.from_tables(grammar, shipped_tables(), netc_parser._LineBreaks())
    built = tables.build(grammar, netc_parser._LineBreaks())
    assert loaded is not None
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in SPECS] + EXTRA
    failures = 0
    for text in texts:
        expect = outcome(built, text)
        assert outcome(loaded, text) == expect, text
        failures += isinstance(expect, tuple)
    assert 0 < failures < len(texts)  # both paths were exercised


@pytest.mark.parametrize("damage", [
    "missing", "empty", "not json", "truncated", "other grammar", "other options",
    "other lark", "other format", "broken tables",
])
def test_damaged_or_stale_tables_are_not_used(damage):
    grammar, text = tables.read_grammar(), shipped_tables()
    doc = json.loads(text)
    if damage == "missing":
        given = None
    elif damage == "empty":
        given = b""
    elif damage == "not json":
        given = b"\x80 not json"
    elif damage == "truncated":
        given = text[: len(text) // 2]
    else:
        if damage == "other grammar":
            doc["grammar"] += "\n// changed\n"
        elif damage == "other options":
            doc["options"]["propagate_positions"] = False
        elif damage == "other lark":
            doc["lark"] = "0.0.1"
        elif damage == "other format":
            doc["format"] = 0
        else:
            doc["data"]["parser"]["parser"]["states"] = {"x": {}}
        given = json.dumps(doc)
    assert tables.from_tables(grammar, given, netc_parser._LineBreaks()) is None


def test_parse_falls_back_to_building_without_the_tables_file(monkeypatch):
    source = RESNET50.read_text(encoding="utf-8")
    expected = netc_parser.parse(source, "resnet50.net")
    real = tables._package_data
    monkeypatch.setattr(tables, "_package_data",
                        lambda name: None if name == tables.TABLES else real(name))
    netc_parser._parser.cache_clear()
    try:
        assert netc_parser.parse(source, "resnet50.net") == expected
        with pytest.raises(netc_parser.SpecError) as err:
            netc_parser.parse("fc 3 -> -> relu")
        assert err.value.diagnostics[0].code == "E103"
    finally:
        netc_parser._parser.cache_clear()


def test_tables_file_is_package_data():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["netc.dsl"]
    assert any(Path("grammar.lark").match(p) for p in patterns)
    assert any(Path(tables.TABLES).match(p) for p in patterns)


def test_build_tables_command_rewrites_a_stale_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build_tables, "tables_path", lambda: str(tmp_path / tables.TABLES))
    (tmp_path / tables.TABLES).write_text("{}", encoding="utf-8")
    assert build_tables.main(["--check"]) == 1
    assert build_tables.main([]) == 0
    assert (tmp_path / tables.TABLES).read_text(encoding="utf-8") == shipped_tables()
    assert build_tables.main(["--check"]) == 0
    assert build_tables.main(["--bogus"]) == 2


# ---- the layer table ------------------------------------------------------------------------


def render(net, by_column: bool | None, width: int, color: bool) -> str:
    from netc.compiler import summary
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False, force_terminal=color,
                      color_system="truecolor" if color else None)
    if by_column is None:
        summary.print_table(net, console)
    else:
        rows = summary._rows(net)
        console.print(summary._table(net, rows, by_column))
    return out.getvalue()


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda p: p.stem)
def test_table_by_columns_is_the_table_row_by_row(path):
    from netc.compiler.check import check_source

    net = check_source(path.read_text(encoding="utf-8"), path.name)
    for width in (30, 64, 80, 120, 250):
        for color in (False, True):
            fast = render(net, True, width, color)
            assert fast == render(net, False, width, color), (width, color)
            assert fast in render(net, None, width, color)


def names_in_table(text: str) -> list[tuple[str, str]]:
    """[(full layer name, kind)] of the leaf rows of a rendered table, read as a user reads
    it: a row with no kind is a scope, and each row sits two spaces deeper than its scope.
    A frozen layer's kind ends in `*` (freeze), which is left out."""
    lines = text.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if "╇" in line) + 1:
                 next(i for i, line in enumerate(lines) if "┼" in line)]
    scopes: list[str] = []
    leaves = []
    for line in body:
        cell, kind = (c.rstrip() for c in line.split("│")[:2])
        name = cell.lstrip(" ")
        depth, odd = divmod(len(cell) - len(name) - 1, 2)  # one space of cell padding
        assert not odd and depth <= len(scopes), line
        if kind.strip():
            leaves.append(("/".join([*scopes[:depth], name]), kind.strip().removesuffix("*")))
        else:
            scopes[depth:] = [name]
    return leaves


def test_table_lists_every_layer_and_the_totals():
    from netc.compiler.check import check_source

    net = check_source(RESNET50.read_text(encoding="utf-8"), "resnet50.net")
    text = render(net, None, 200, False)
    leaves = list(net.leaves())
    assert len(leaves) > 100
    assert names_in_table(text) == [(leaf.name, leaf.kind) for leaf in leaves]
    lines = text.splitlines()
    assert f"{net.params:,}" in lines[-3] and "total" in lines[-3]
    assert lines[-2].startswith(f"trainable params: {net.params:,}")


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/**/*.net")), ids=lambda p: p.stem)
def test_netc_check_shows_every_layer_name_whole(path, columns, monkeypatch, capsys):
    """`netc check` in a terminal of 80 or 120 columns: each leaf's name is its scopes' rows
    above it and its own last part, none cut short; the numbers are whole too."""
    from netc.compiler.check import check_source
    from netc.runtime.cli import main

    net = check_source(path.read_text(encoding="utf-8"), str(path))
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["check", str(path)]) == 0
    text = capsys.readouterr().out
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= columns
    assert names_in_table(text) == [(leaf.name, leaf.kind) for leaf in net.leaves()]
    assert f"{net.params:,}" in text and f"{net.macs:,}" in text


def test_table_of_one_layer_and_cells_with_spaces():
    from netc.compiler import summary
    from netc.compiler.check import check_source

    net = check_source("input 4\nfc 2", "one.net")
    assert render(net, True, 80, False) == render(net, False, 80, False)
    assert "fc_1" in render(net, None, 80, False)
    assert summary._one_word("conv_1") and summary._one_word("")
    assert not summary._one_word("two words") and not summary._one_word("a\nb")


# ---- what `netc check` imports --------------------------------------------------------------


@pytest.mark.parametrize("as_json", [True, False])
def test_check_imports_rich_only_for_the_table_and_never_jax_numpy_nor_regex(as_json):
    code = ("import sys, io, contextlib; from netc.runtime.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            f"    rc = main(['check', {str(RESNET50)!r}] + {['--json'] if as_json else []!r})\n"
            "print(rc, 'rich' in sys.modules, 'jax' in sys.modules, 'regex' in sys.modules,"
            " 'numpy' in sys.modules)")
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", str(not as_json), "False", "False", "False"]


def test_cli_hides_regex_from_lark_only_in_its_own_process():
    pytest.importorskip("regex")
    script = ("import io, contextlib, netc\n"
              "from netc.runtime.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    assert {run}\n"
              "from lark import Lark\n"
              "try:\n"
              "    Lark('start: /a/', parser='lalr', regex=True); print('regex ok')\n"
              "except ImportError:\n"
              "    print('no regex')\n")
    results = []
    for run in (f"netc.check({str(RESNET50)!r}).params > 0",
                f"main(['check', {str(RESNET50)!r}, '--json']) == 0"):
        out = run_python("-c", script.format(run=run))
        assert out.returncode == 0, out.stderr
        results.append(out.stdout.strip())
    assert results == ["regex ok", "no regex"]


# ---- the garbage collector in the command's own process (cli.command) ------------------------


def test_the_command_process_collects_nothing_while_importing_then_freezes_and_collects():
    """cli.command() turns the collector off; a JAX command's configure_jax (settle_imports)
    freezes what the imports made and turns it back on. configure_jax in another program's
    process leaves its collector as it is, on or off."""
    code = ("import gc, sys\n"
            "from netc.runtime import cli, commands\n"
            "seen = {}\n"
            "def train(args):\n"
            "    seen['during imports'] = gc.isenabled()\n"
            "    commands.configure_jax()\n"
            "    seen['settled'] = (gc.isenabled(), gc.get_freeze_count() > 10_000)\n"
            "    return 0\n"
            "commands.cmd_train = train\n"
            "sys.argv = ['netc', 'train', 'x.net']\n"
            "rc = cli.command()\n"
            "print(rc, seen['during imports'], *seen['settled'], gc.get_freeze_count() > 10_000)\n"
            "gc.unfreeze(); before = gc.get_freeze_count()\n"
            "commands.configure_jax()\n"
            "print(gc.isenabled(), gc.get_freeze_count() == before)\n"
            "gc.disable()  # a program that runs without collections: left so\n"
            "commands.configure_jax()\n"
            "print(gc.isenabled(), gc.get_freeze_count() == before)\n")
    out = run_python("-c", code, env={**os.environ, "NETC_CACHE_DIR": "off"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "False", "True", "True", "True", "True", "True",
                                  "False", "True"]
