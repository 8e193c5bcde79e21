"""The LALR tables of grammar.lark, shipped as data so `netc check` does not rebuild them.

Building the Lark LALR parser from the grammar takes ~35-90 ms at every start; loading the same
tables from grammar_tables.json takes a few ms. The file is generated, never edited by hand.
After changing grammar.lark (or upgrading lark), regenerate it with

    python -m netc.dsl.build_tables            # writes dsl/grammar_tables.json
    python -m netc.dsl.build_tables --check    # exit 1 if the file is stale (a test checks)

The file records the grammar text, the Lark options and the lark version it was made from.
When it is missing, unreadable or stale, `lark_parser` builds the tables from the grammar
instead: slower, same parser. The format is Lark's own `memo_serialize` output as JSON (no
pickle), with the parse-table states and tokens renumbered canonically so that the file does
not depend on Python's string-hash seed.
"""

from __future__ import annotations

import json
import pkgutil

import lark
from lark import Lark

GRAMMAR = "grammar.lark"
TABLES = "grammar_tables.json"
# The one place the parser's Lark options live: used to build, to generate and to load.
OPTIONS = {"parser": "lalr", "propagate_positions": True, "maybe_placeholders": True}
FORMAT = 1


def _package_data(name: str) -> bytes | None:
    try:
        return pkgutil.get_data(__package__, name)
    except OSError:
        return None


def read_grammar() -> str:
    data = _package_data(GRAMMAR)
    if data is None:
        raise FileNotFoundError(f"{GRAMMAR} is missing from the {__package__} package")
    return data.decode("utf-8")


def lark_parser(postlex=None) -> Lark:
    """The Lark LALR parser of grammar.lark: from the shipped tables when they are fresh,
    else built from the grammar."""
    grammar = read_grammar()
    return from_tables(grammar, _package_data(TABLES), postlex) or build(grammar, postlex)


def build(grammar: str, postlex=None) -> Lark:
    return Lark(grammar, postlex=postlex, **OPTIONS)


def from_tables(grammar: str, tables: bytes | str | None, postlex=None) -> Lark | None:
    """The parser from serialized tables, or None when they are absent, unreadable or were
    made from another grammar, other options or another lark version."""
    if not tables:
        return None
    try:
        doc = json.loads(tables)
        if (doc.get("format") != FORMAT or doc.get("grammar") != grammar
                or doc.get("options") != OPTIONS or doc.get("lark") != lark.__version__):
            return None
        data, memo = doc["data"], _int_keys(doc["memo"])
        table = data["parser"]["parser"]
        table["tokens"] = _int_keys(table["tokens"])
        table["states"] = {int(s): _int_keys(acts) for s, acts in table["states"].items()}
        return Lark._load_from_dict(data, memo, postlex=postlex)
    except Exception:  # a damaged file, or lark changed its format: build instead
        return None


def _int_keys(d: dict) -> dict:
    return {int(k): v for k, v in d.items()}
