"""`netc diagnose RUN`: the course's diagnosis of bias, variance and data mismatch.

Read from the final figures of a run (`run.json`'s "final": inference over each whole
split); no JAX, no data. As LANGUAGE.md section 7 pins it, with errors 1 - accuracy (the
loss where the net has no accuracy) and the Bayes error given by the user (default 0):

    avoidable bias      = train - Bayes
    variance            = dev - train        (train-dev - train when a train-dev split exists)
    data mismatch       = dev - train-dev
    overfitting to dev  = test - dev

A figure whose splits the run lacks is None (null in --json). The biggest gap is the problem
to work on first, with the remedies the course gives for it.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

from .errors import EXIT_OK, RunError, UsageError

SPLITS = ("train", "train_dev", "dev", "test")
GAPS = ("avoidable_bias", "variance", "data_mismatch", "dev_overfitting")

NAMES = {"avoidable_bias": "avoidable bias", "variance": "variance",
         "data_mismatch": "data mismatch", "dev_overfitting": "overfitting to dev"}

# The course's remedies (course 2, week 1 "Basic recipe for machine learning"; course 3,
# "Bias and variance with mismatched data distributions", "Addressing data mismatch").
REMEDIES = {
    "avoidable_bias": [
        "train a bigger network (more hidden units or layers)",
        "train longer (more epochs)",
        "use a better optimisation algorithm (momentum, RMSprop, Adam; a tuned learning rate)",
        "try another architecture or a hyperparameter search (netc tune)",
    ],
    "variance": [
        "get more training data",
        "regularise: L2 (l2 LAMBDA), dropout (dropout keep=P), data augmentation "
        "(augment flip crop=P)",
        "stop early (early_stop patience=N)",
        "try another architecture or a hyperparameter search (netc tune)",
    ],
    "data_mismatch": [
        "carry out error analysis: look at dev examples the net gets wrong and see how they "
        "differ from train (netc eval RUN --errors 100)",
        "make the training data more like dev: collect more data like it, or synthesise it "
        "(artificial data synthesis, without over-sampling a small part of all possible data)",
    ],
    "dev_overfitting": [
        "get a bigger dev set: the net (or its tuning) has overfitted the dev set",
    ],
}


def read_final(run_dir: str | Path) -> dict:
    """run.json of a finished run, with its "final" figures. Raises RunError."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not run_dir.is_dir():
        raise RunError(f"run folder '{run_dir}' not found")
    if not info_path.is_file():
        raise RunError(f"{run_dir} is not a netc run folder (no run.json); give a folder "
                       "written by netc train --out")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read {info_path}: {exc}") from None
    final = info.get("final") if isinstance(info, dict) else None
    if not isinstance(final, dict) or not isinstance(final.get("train"), dict):
        raise RunError(f"{run_dir} has no final figures yet: the run is still training or "
                       "stopped before its end (resume it with netc train SPEC --out "
                       f"{run_dir} --resume)")
    return info


def split_errors(final: dict) -> tuple[dict, str]:
    """({split: error or None}, "accuracy" or "loss"): 1 - accuracy when every split present
    has an accuracy, else the loss."""
    present = {s: final[s] for s in SPLITS if isinstance(final.get(s), dict)}
    metric = "accuracy" if all("accuracy" in m for m in present.values()) else "loss"
    errors = {}
    for split in SPLITS:
        figures = present.get(split)
        if figures is None:
            errors[split] = None
        elif metric == "accuracy":
            errors[split] = 1.0 - float(figures["accuracy"])
        else:
            errors[split] = float(figures["loss"])
    return errors, metric


def check_bayes(bayes: float, metric: str) -> None:
    """A Bayes error must be a probability (accuracy) or >= 0 (loss). Raises UsageError."""
    if not math.isfinite(bayes) or bayes < 0 or (metric == "accuracy" and bayes > 1):
        bound = "between 0 and 1" if metric == "accuracy" else "a number >= 0"
        raise UsageError(f"--bayes-error {bayes:g} must be {bound} (an error rate, e.g. 0.01 "
                         "or 1%)")


def below_bayes_note(bayes: float, train_error: float, metric: str) -> str | None:
    """A train error under the Bayes error is possible (a net can memorise its training
    set, which no model can do for new examples), but the avoidable bias is then negative:
    say so rather than refuse."""
    if train_error >= bayes:
        return None
    return (f"the train error {_show(train_error, metric)} is below the Bayes error "
            f"{_show(bayes, metric)}: the net fits its training examples better than any "
            "model can classify new ones (it has memorised them), so the avoidable bias is "
            "negative; read the variance")


def diagnose(final: dict, bayes_error: float = 0.0) -> dict:
    """The diagnosis of a run's final figures, as `netc diagnose --json` prints it."""
    errors, metric = split_errors(final)
    train, train_dev, dev, test = (errors[s] for s in SPLITS)
    check_bayes(bayes_error, metric)

    def gap(a, b):
        return None if a is None or b is None else a - b

    result = {
        "train_error": train, "dev_error": dev, "test_error": test, "train_dev_error": train_dev,
        "bayes_error": bayes_error,
        "avoidable_bias": train - bayes_error,
        "variance": gap(train_dev, train) if train_dev is not None else gap(dev, train),
        "data_mismatch": gap(dev, train_dev),
        "dev_overfitting": gap(test, dev),
        "metric": metric,
        "notes": [note] if (note := below_bayes_note(bayes_error, train, metric)) else [],
    }
    known = [(result[g], -i, g) for i, g in enumerate(GAPS) if result[g] is not None]
    value, _, dominant = max(known)  # ties go to the earlier problem (bias before variance)
    result["dominant"] = dominant if value > 0 else None
    result["remedies"] = REMEDIES[dominant] if value > 0 else []
    return result


def _show(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4f}"


def render(result: dict, run: str, net: str | None = None) -> str:
    """The diagnosis as text: the errors, the gaps beside the errors they come from, and the
    dominant problem with its remedies."""
    metric = result["metric"]
    what = "errors are 1 - accuracy" if metric == "accuracy" else \
        "errors are the loss (the net has no accuracy)"
    lines = [f"{net or run}: the course's diagnosis ({what})", ""]
    has_train_dev = result["train_dev_error"] is not None
    variance_from = "train-dev - train" if has_train_dev else "dev - train"
    rows = [
        ("Bayes error (given)", result["bayes_error"], None, None),
        ("train error", result["train_error"], "avoidable_bias", "train - Bayes"),
        ("train-dev error", result["train_dev_error"], "variance", variance_from),
        ("dev error", result["dev_error"],
         "data_mismatch" if has_train_dev else None, "dev - train-dev"),
        ("test error", result["test_error"], "dev_overfitting", "test - dev"),
    ]
    if not has_train_dev:  # variance beside the dev error, where it is read from
        rows[2] = ("train-dev error", None, None, None)
        rows[3] = ("dev error", result["dev_error"], "variance", variance_from)
    for label, error, gap, formula in rows:
        if error is None:
            split = label.removesuffix(" error")
            lines.append(f"  {label:<20} {'-':>8}   (no {split} split)")
            continue
        line = f"  {label:<20} {_show(error, metric):>8}"
        if gap is not None:
            line += f"   {NAMES[gap]:<19} {_show(result[gap], metric):>8}   = {formula}"
        lines.append(line)
    lines.append("")
    for note in result["notes"]:
        lines += textwrap.wrap(f"Note: {note}.", 88, subsequent_indent="  ")
    dominant = result["dominant"]
    if dominant is None:
        lines.append("No gap is above zero: nothing to fix that these splits can show.")
    else:
        lines.append(f"The biggest gap is {NAMES[dominant]} "
                     f"({_show(result[dominant], metric)}); the course's remedies:")
        lines += [f"  - {r.replace('RUN', run)}" for r in result["remedies"]]
    if result["dev_error"] is None and not has_train_dev:
        lines.append("(no dev split: variance cannot be told; give the spec a split with a "
                     "dev part, or train_dev F)")
    return "\n".join(lines)


def parse_bayes(text: str) -> float:
    """--bayes-error: a number (0.05) or a percentage (5%)."""
    import argparse

    value = text.strip()
    scale = 100.0 if value.endswith("%") else 1.0
    try:
        return float(value.rstrip("%")) / scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an error rate such as 0.05 or 5%, got "
                                         f"{text!r}") from None


def cmd_diagnose(args) -> int:
    info = read_final(args.dir)
    result = diagnose(info["final"], args.bayes_error)
    done, epochs = info.get("epochs_done"), info.get("epochs")
    if args.json:
        print(json.dumps({"run": str(args.dir), "net": info.get("net"), **result,
                          "epochs_done": done, "epochs": epochs}))
        return EXIT_OK
    print(render(result, str(args.dir), info.get("net")))
    best = info.get("best_epoch")
    if isinstance(best, int):  # early stopping: the final figures are the best epoch's
        cut = isinstance(done, int) and isinstance(epochs, int) and done < epochs
        how = f"stopped after epoch {done} of {epochs}" if cut else "ran to its last epoch"
        print(f"(early stopping: the run {how}; these are the figures of epoch {best}, "
              "its best)")
    elif isinstance(done, int) and isinstance(epochs, int) and done < epochs:
        print(f"(the run stopped after epoch {done} of {epochs}: these are its figures then)")
    return EXIT_OK
