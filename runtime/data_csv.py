"""Reading csv files (numpy only): numeric feature columns, columns of categories expanded
one-hot (``onehot=COL,...``) and a label column of numbers or class names.

:func:`load_csv` reads a data file into ``x``, ``y`` (+ ``class_names``) and its
``csv_layout``: how its columns became features (the file's columns, the label column, each
one-hot column's categories, the feature names). A run records the layout in run.json;
:func:`load_csv_inputs` applies it to new inputs (``netc predict``), so that a column of
categories expands to the same features, and a split's own file (``test="test.csv"``) is
read with the main file's categories.
"""

from __future__ import annotations

import csv
import math
import pathlib
import re

import numpy as np

from .data_base import DataError, check_options, first_line

__all__ = ["MISSING", "NO_LABEL", "load_csv", "load_csv_inputs"]

# Cells that stand for a missing value in a numeric feature column (compared lower-case).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
# ... and in a label column, where `nan` is an unknown label (sigmoid outputs allow them)
# and `none` may be a class.
NO_LABEL = MISSING - {"nan", "none"}


def _parse_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _column_name(j: int, header: list[str] | None) -> str:
    """How the messages and the layout name column ``j``: its header name, else its index."""
    return header[j] if header is not None else str(j)


def _quoted(j: int, header: list[str] | None) -> str:
    return f"'{header[j]}'" if header is not None else str(j)


def _column_index(ref: object, header: list[str] | None, n_columns: int, source: str,
                  option: str) -> int:
    """Resolve a column given by name or 0-based index (option ``label=`` or ``onehot=``)."""
    if header is not None and isinstance(ref, str) and ref in header:
        return header.index(ref)
    try:
        if isinstance(ref, bool):
            raise TypeError
        index = int(ref)
    except (TypeError, ValueError):
        if header is None:
            raise DataError(
                f"csv file '{source}' has no header row, so {option}={ref!r} must be a "
                f"column index (0..{n_columns - 1})"
            ) from None
        raise DataError(
            f"{option} column {ref!r} not found in csv file '{source}'; columns: "
            f"{', '.join(header)}"
        ) from None
    if not -n_columns <= index < n_columns:
        raise DataError(
            f"{option} column {index} out of range for csv file '{source}' "
            f"with {n_columns} columns (0..{n_columns - 1})"
        )
    return index % n_columns


def _onehot_columns(value: object, header: list[str] | None, n_columns: int, source: str,
                    label: int) -> list[int]:
    """The columns ``onehot=COL,...`` names (names or indices), in file order."""
    if value is None:
        return []
    refs = [value] if isinstance(value, int) else [r.strip() for r in str(value).split(",")]
    if not all(str(r) for r in refs):
        raise DataError(f"option onehot={value!r} must name columns, e.g. onehot=color,size")
    columns = {_column_index(r, header, n_columns, source, "onehot") for r in refs}
    if label in columns:
        raise DataError(f"column {_quoted(label, header)} of csv file '{source}' is the label; "
                        "onehot= names feature columns (a label of words gives classes)")
    return sorted(columns)


def _is_header(first: list[str], second: list[str] | None) -> bool:
    """Whether a csv file's first row names its columns: it has a word where the next row has
    a number (a column of string labels holds words in every row), or no row follows."""
    words = [_parse_number(cell) is None for cell in first]
    if not any(words):
        return False
    if second is None or all(words):
        return True
    return any(word and j < len(second) and _parse_number(second[j]) is not None
               for j, word in enumerate(words))


def _read_table(path: pathlib.Path, source: str,
                names: list[str] | None = None) -> tuple[list[str] | None, list]:
    """The header (None when the first row is data) and the data rows as ``(line, cells)``,
    blank lines left out and every row as long as the first. With ``names`` (the features
    of a run's data), the first row is a header when it holds one of them; else when it
    looks like one (:func:`_is_header`)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            rows = [
                (line_no, [cell.strip() for cell in row])
                for line_no, row in enumerate(reader, start=1)
                if any(cell.strip() for cell in row)
            ]
        except csv.Error as error:  # a field over csv's limit, a NUL byte...
            raise DataError(f"cannot read csv file '{source}' at line {reader.line_num}: "
                            f"{first_line(error)}") from None
    if not rows:
        raise DataError(f"csv file '{source}' is empty")
    header = None
    if (bool(set(names) & set(rows[0][1])) if names
            else _is_header(rows[0][1], rows[1][1] if len(rows) > 1 else None)):
        header = rows[0][1]
        rows = rows[1:]
    if not rows:
        raise DataError(f"csv file '{source}' has a header but no data rows")
    n_columns = len(header) if header is not None else len(rows[0][1])
    for line_no, row in rows:
        if len(row) != n_columns:
            raise DataError(
                f"csv file '{source}' row {line_no} has {len(row)} columns, expected {n_columns}"
            )
    return header, rows


def _hint(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+", name) else f'"{name}"'


def _numbers(rows: list, j: int, header: list[str] | None, source: str) -> np.ndarray:
    """Column ``j`` as float64 numbers; a word, a missing or an infinite value is an error
    naming its row and column."""
    cells = [row[j] for _, row in rows]
    try:
        values = np.asarray(cells, dtype=str).astype(np.float64)
    except ValueError:
        values = None
    if values is not None and np.isfinite(values).all():
        return values
    for line_no, row in rows:
        cell = row[j]
        number = _parse_number(cell)
        where = f"csv file '{source}' row {line_no}, column {_quoted(j, header)}"
        if cell.lower() in MISSING:
            raise DataError(f"{where}: missing value" + (f" ({cell!r})" if cell else ""))
        if number is None:
            raise DataError(f"{where}: {cell!r} is not a number; for a column of categories, "
                            f"add onehot={_hint(_column_name(j, header))} to the data line")
        if not math.isfinite(number):
            raise DataError(f"{where}: {cell!r} is not a finite number")
    raise AssertionError("unreachable: a cell failed to parse")  # pragma: no cover


def _categories(rows: list, j: int, header: list[str] | None, source: str) -> list[str]:
    """The sorted distinct values of column ``j`` (numerically when all are numbers)."""
    values = {row[j] for _, row in rows}
    if "" in values:
        line_no = next(line for line, row in rows if row[j] == "")
        raise DataError(f"csv file '{source}' row {line_no}, column {_quoted(j, header)}: "
                        "missing value")
    numbers = {v: _parse_number(v) for v in values}
    if all(n is not None and math.isfinite(n) for n in numbers.values()):
        return sorted(values, key=lambda v: (numbers[v], v))
    return sorted(values)


def _one_hot(rows: list, j: int, values: list[str], header: list[str] | None,
             source: str) -> np.ndarray:
    """Column ``j`` as one 0/1 column per value of ``values``; a value not among them is an
    error naming it, its row and column."""
    index = {v: k for k, v in enumerate(values)}
    out = np.zeros((len(rows), len(values)), dtype=np.float64)
    for i, (line_no, row) in enumerate(rows):
        k = index.get(row[j])
        if k is None:
            where = f"csv file '{source}' row {line_no}, column {_quoted(j, header)}"
            if not row[j]:
                raise DataError(f"{where}: missing value")
            raise DataError(f"{where}: {row[j]!r} is not one of the column's categories in "
                            f"the training data ({', '.join(values)})")
        out[i, k] = 1.0
    return out


def _features(rows: list, columns: list[tuple[int, list[str] | None]],
              header: list[str] | None, source: str) -> np.ndarray:
    """The feature matrix (m, n) float32 of ``columns``: ``(column, categories)`` pairs,
    numeric where categories is None, else one-hot."""
    blocks = [_numbers(rows, j, header, source)[:, None] if values is None
              else _one_hot(rows, j, values, header, source) for j, values in columns]
    if not blocks:
        return np.zeros((len(rows), 0), np.float32)
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _labels(rows: list, label: int, header: list[str] | None, source: str) -> dict:
    """``y`` of the label column: numbers (m, 1) float32 (``nan`` an unknown label), or
    class ids (m,) int32 of the sorted unique words, which are the ``class_names``."""
    labels = [row[label] for _, row in rows]
    missing = [cell.lower() in NO_LABEL for cell in labels]
    numbers = [_parse_number(cell) for cell in labels]
    words = any(n is None and not gone for n, gone in zip(numbers, missing))
    if any(missing):
        i = missing.index(True)
        raise DataError(f"csv file '{source}' row {rows[i][0]}, column "
                        f"{_quoted(label, header)}: no label"
                        + (f" ({labels[i]!r})" if labels[i] else "")
                        + (" (the column holds class names)" if words else ""))
    if not words:
        return {"y": np.asarray(numbers, dtype=np.float32).reshape(-1, 1)}
    names = sorted(set(labels))
    y = np.searchsorted(np.asarray(names), np.asarray(labels)).astype(np.int32)
    return {"y": y, "class_names": np.asarray(names, dtype=str)}


def load_csv(path: pathlib.Path, source: str, options: dict, part: str | None = None,
             layout: dict | None = None) -> dict:
    """A csv file: feature columns and a label column (``label=``, default the last).

    The first row is a header when it names the columns (:func:`_is_header`). Feature
    columns are numbers, except those ``onehot=COL,...`` names (names or indices): each
    becomes one 0/1 feature per sorted distinct value, in the column's place. ``layout``
    (the main file's, for a split's own file) gives those values instead, so both files
    expand to the same features. Returns ``x``, ``y`` (see :func:`_labels`), maybe
    ``class_names``, and ``csv_layout`` (a JSON-able dict: ``columns``, the header or None;
    ``n_columns``; ``label``, its index; ``onehot``, column name -> categories;
    ``features``, the feature names, ``COLUMN=VALUE`` for one-hot ones).
    """
    check_options(f"csv file '{source}'", options, ("label", "onehot"))
    header, rows = _read_table(path, source)
    n_columns = len(rows[0][1])
    if n_columns < 2:
        raise DataError(f"csv file '{source}' needs at least 2 columns (features and a label)")
    label = _column_index(options.get("label", n_columns - 1), header, n_columns, source,
                          "label")
    onehot = _onehot_columns(options.get("onehot"), header, n_columns, source, label)
    known = (layout or {}).get("onehot") or {}
    categories = {j: known.get(_column_name(j, header)) or _categories(rows, j, header, source)
                  for j in onehot}
    columns = [(j, categories.get(j)) for j in range(n_columns) if j != label]
    x = _features(rows, columns, header, source)
    names = [name for j, values in columns
             for name in ([_column_name(j, header)] if values is None
                          else [f"{_column_name(j, header)}={v}" for v in values])]
    layout = {"columns": header, "n_columns": n_columns, "label": label,
              "onehot": {_column_name(j, header): values for j, values in categories.items()},
              "features": names}
    return {"x": x, **_labels(rows, label, header, source), "csv_layout": layout}


def load_csv_inputs(path: pathlib.Path, source: str, layout: dict | None) -> np.ndarray:
    """The features of new inputs in a csv file, as the run's data ``layout`` (see
    :func:`load_csv`) made them; the label column may be there (its cells are ignored) or
    not. Where both files have a header, columns are matched by name (any order);
    otherwise by position. Without a layout (a run not trained on a csv file), every
    column is a numeric feature."""
    if layout is None:
        header, rows = _read_table(path, source)
        n_columns = len(rows[0][1])
        return _features(rows, [(j, None) for j in range(n_columns)], header, source)
    trained, label = layout.get("columns"), int(layout["label"])
    expected = int(layout["n_columns"])
    onehot = layout.get("onehot") or {}
    wanted = [j for j in range(expected) if j != label]  # the training file's features
    header, rows = _read_table(path, source,
                               [trained[j] for j in wanted] if trained is not None else None)
    n_columns = len(rows[0][1])
    if trained is not None and header is not None:
        missing = [trained[j] for j in wanted if trained[j] not in header]
        if missing:
            raise DataError(f"csv file '{source}' has no column '{missing[0]}'; the run's "
                            f"data had the features {', '.join(trained[j] for j in wanted)}")
        place = [header.index(trained[j]) for j in wanted]
    elif n_columns == expected:
        place = wanted
    elif n_columns == expected - 1:
        place = list(range(n_columns))
    else:
        raise DataError(f"csv file '{source}' has {n_columns} columns but the run's data had "
                        f"{expected} ({expected - 1} features and a label column)")
    names = trained if trained is not None else [str(j) for j in range(expected)]
    columns = [(k, onehot.get(names[j])) for j, k in zip(wanted, place)]
    return _features(rows, columns, header, source)
