"""Generate dsl/grammar_tables.json, the LALR tables of grammar.lark (see tables.py).

    python -m netc.dsl.build_tables            # (re)write the file after changing the grammar
    python -m netc.dsl.build_tables --check    # exit 1 if the file is stale

The output is deterministic: Lark numbers parse states and tokens in set iteration order,
which follows Python's string-hash seed, so they are renumbered canonically here.
"""

from __future__ import annotations

import json
import os
import sys

import lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

from .tables import FORMAT, OPTIONS, TABLES, build, read_grammar

SHIFT = 0  # lark's serialized action codes: 0 shift (arg: a state), 1 reduce (arg: a rule)


def generate(grammar: str) -> str:
    """The text of grammar_tables.json for `grammar` (deterministic)."""
    data, memo = build(grammar).memo_serialize([TerminalDef, Rule])
    data["parser"]["parser"] = _canonical(data["parser"]["parser"])
    doc = {"format": FORMAT, "lark": lark.__version__, "options": OPTIONS, "grammar": grammar,
           "data": data, "memo": memo}
    return json.dumps(doc, sort_keys=True, indent=0, separators=(",", ":")) + "\n"


def _canonical(table: dict) -> dict:
    """Renumber a serialized ParseTable: tokens by name, states in breadth-first order from the
    start states (following shifts and gotos in token-name order). Lark numbers both in set
    iteration order, which changes with PYTHONHASHSEED."""
    names = table["tokens"]  # {index: terminal or rule name}
    token_ids = {name: i for i, name in enumerate(sorted(names.values()))}
    order: list = []
    seen: set = set()
    queue = [table["start_states"][s] for s in sorted(table["start_states"])]
    while queue:
        state = queue.pop(0)
        if state in seen:
            continue
        seen.add(state)
        order.append(state)
        actions = sorted(table["states"][state].items(), key=lambda kv: names[kv[0]])
        queue += [arg for _, (action, arg) in actions if action == SHIFT]
    if len(order) != len(table["states"]):
        raise ValueError("parse table has states not reachable from a start state")
    state_ids = {old: new for new, old in enumerate(order)}
    states = {
        state_ids[old]: {
            token_ids[names[tok]]: [action, state_ids[arg] if action == SHIFT else arg]
            for tok, (action, arg) in table["states"][old].items()
        }
        for old in order
    }
    return {
        "tokens": {i: name for name, i in token_ids.items()},
        "states": states,
        "start_states": {k: state_ids[v] for k, v in table["start_states"].items()},
        "end_states": {k: state_ids[v] for k, v in table["end_states"].items()},
    }


def tables_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), TABLES)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = tables_path()
    text = generate(read_grammar())
    if argv == ["--check"]:
        try:
            with open(path, encoding="utf-8") as fh:
                current = fh.read()
        except OSError:
            current = None
        if current != text:
            print(f"{path} is stale: run python -m netc.dsl.build_tables", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    if argv:
        print("usage: python -m netc.dsl.build_tables [--check]", file=sys.stderr)
        return 2
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
