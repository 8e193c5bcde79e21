"""`netc tune`: search spaces sampled through netc's own path (Optuna's ask with netc's
distributions and transforms), their parse errors, best.net's in-place edit, --refine's box,
and end to end on the moons example: tune.jsonl, best.net, the table, continuing a study,
workers sharing one journal, a diverging trial, pruning."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from netc.compiler.check import check_source
from netc.compiler.overrides import apply_overrides
from netc.runtime import cli
from netc.runtime.tune import spaces as sp
from netc.runtime.tune.objective import Objective, decide
from netc.runtime.tune.specedit import write_settings
from netc.runtime.tune.study import ask_trial, quiet_optuna, refine_spaces, worker_seed

ROOT = Path(__file__).resolve().parent.parent
MOONS = ROOT / "examples" / "moons_adam.net"
# the moons example made quick: 100 points, full-batch steps, 20 epochs
QUICK = ["--set", "data.n=100", "--set", "batch=full", "--set", "epochs=20"]
RECORD_KEYS = {"number", "round", "state", "reason", "params", "value", "final", "epochs_done",
               "run"}


def draws(text: str, n: int = 4000, seed: int = 1) -> list:
    """n values of the space `text` drawn as netc tune draws them."""
    import optuna

    quiet_optuna()
    space = sp.parse_set(text)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        _, values = ask_trial(study, [space])
        out.append(values[space.key])
    return out


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# ---- spaces, sampled ------------------------------------------------------------------------


def test_log_space_puts_a_quarter_of_the_draws_in_each_decade():
    values = draws("optimizer.lr=log(1e-4, 1)")
    assert all(1e-4 <= v <= 1 for v in values)
    decades = Counter(min(math.floor(math.log10(v)), -1) for v in values)
    assert set(decades) == {-4, -3, -2, -1}
    for d in (-4, -3, -2, -1):
        assert within_binomial(decades[d], len(values), 0.25), decades
    # and uniform within a decade on the log scale, not on the linear one
    low_half = sum(1e-2 <= v < 10 ** -1.5 for v in values)
    assert within_binomial(low_half, len(values), 0.125)


def test_one_minus_log_space_gives_betas_with_log_uniform_one_minus_beta():
    values = draws("optimizer.b1=1-log(1e-3, 1e-1)")
    assert all(0.9 <= v <= 0.999 for v in values)
    logs = np.log10(1 - np.asarray(values))
    for lo in (-3.0, -2.5, -2.0, -1.5):  # four equal parts of [-3, -1]
        count = int(np.sum((logs >= lo - 1e-9) & (logs < lo + 0.5 - 1e-9)))
        assert within_binomial(count, len(values), 0.25), (lo, count)
    assert sum(v >= 0.99 for v in values) == pytest.approx(len(values) / 2, abs=140)


def test_uniform_space_is_flat_and_inclusive():
    values = draws("optimizer.b1=uniform(0.2, 0.6)")
    assert all(0.2 <= v <= 0.6 for v in values)
    bins = Counter(min(int((v - 0.2) / 0.1), 3) for v in values)
    for b in range(4):
        assert within_binomial(bins[b], len(values), 0.25), bins


def test_int_space_includes_both_bounds_equally():
    values = draws("epochs=int(1, 4)")
    assert all(isinstance(v, int) for v in values)
    counts = Counter(values)
    assert set(counts) == {1, 2, 3, 4}
    for k in (1, 2, 3, 4):
        assert within_binomial(counts[k], len(values), 0.25), counts
    assert set(draws("epochs=int(7, 7)", n=20)) == {7}


def test_choice_space_covers_every_value():
    values = draws("batch=choice(32, 64, full)", n=3000)
    counts = Counter(values)
    assert set(counts) == {32, 64, "full"}
    for k in counts:
        assert within_binomial(counts[k], len(values), 1 / 3), counts
    space = sp.parse_set("batch=choice(32, 64, full)")
    assert [sp.override(space, v) for v in (32, 64, "full")] == ["batch=32", "batch=64",
                                                                 "batch=full"]


def test_samples_keep_four_significant_figures_and_are_written_as_drawn():
    for value in draws("optimizer.lr=log(1e-5, 1e-1)", n=200):
        assert float(f"{value:.4g}") == value
        space = sp.parse_set("optimizer.lr=log(1e-5, 1e-1)")
        written = sp.override(space, value).partition("=")[2]
        assert float(written) == value
    for value in draws("optimizer.b1=1-log(1e-3, 1e-1)", n=200):
        d = 1 - value
        assert float(f"{d:.4g}") == pytest.approx(d, rel=1e-9)


def test_workers_get_different_sampler_seeds():
    seeds = {worker_seed(0, w, r, s) for w in range(8) for r in (1, 2) for s in (0, 16)}
    assert len(seeds) == 8 * 2 * 2
    assert worker_seed(3, 1, 1, 0) == worker_seed(3, 1, 1, 0)


# ---- spaces, parsed -------------------------------------------------------------------------

PARSED = {
    "optimizer.lr=log(1e-4, 1)": sp.LogSpace("optimizer.lr", 1e-4, 1.0),
    "optimizer.b2=1-log(1e-4,1e-2)": sp.OneMinusLogSpace("optimizer.b2", 1e-4, 1e-2),
    "l2 = uniform(0, 0.5)": sp.UniformSpace("l2", 0.0, 0.5),
    "epochs=int(10,200)": sp.IntSpace("epochs", 10, 200),
    "batch=choice(32, 64,full)": sp.ChoiceSpace("batch", (32, 64, "full"), ("32", "64", "full")),
    'data=choice("a.npz", b)': sp.ChoiceSpace("data", ("a.npz", "b"), ('"a.npz"', "b")),
}


@pytest.mark.parametrize("item", list(PARSED))
def test_spaces_parse(item):
    assert sp.parse_set(item) == PARSED[item]


@pytest.mark.parametrize("item", ["epochs=5", "optimizer.lr=0.01", "data=moons",
                                  'data="f(1).npz"'])
def test_a_value_without_a_space_function_is_fixed(item):
    assert sp.parse_set(item) is None


SPACE_ERRORS = {
    "optimizer.lr=log(1, 1e-4)": "above the upper bound",
    "optimizer.lr=log(0, 1)": "bounds > 0",
    "optimizer.lr=log(-1e-3, 1)": "bounds > 0",
    "optimizer.b1=1-log(0, 0.1)": "bounds > 0",
    "optimizer.lr=logg(1e-4, 1)": "did you mean log?",
    "optimizer.lr=normal(0, 1)": "unknown search space 'normal'",
    # other tools' names: the same call with netc's
    "optimizer.lr=loguniform(1e-4, 0.1)": "unknown search space 'loguniform' (did you mean "
                                          "log(1e-4, 0.1)? spaces: log(1e-4, 1), ",
    "batch=Categorical(32, 64)": "(did you mean choice(32, 64)? spaces:",
    "batch=categorical([32, 64])": "(did you mean choice(32, 64)? spaces:",
    "epochs=randint(5, 9)": "(did you mean int(5, 8)? (randint leaves its upper bound out, "
                            "int takes it) spaces:",
    # a call netc would refuse too is not suggested
    "optimizer.lr=loguniform(1e-4,1e-1,base=2)": "(netc's is log, e.g. log(1e-4, 1); spaces:",
    "optimizer.lr=loguniform(0, 1)": "(netc's is log, e.g. log(1e-4, 1); spaces:",
    "optimizer.lr=log(1e-4)": "takes two bounds",
    "l2=uniform(0, 1, 2)": "takes two bounds",
    "l2=uniform(a, 1)": "'a' is not a number",
    "l2=uniform(0, inf)": "finite",
    "epochs=int(1.5, 4)": "must be integers",
    "epochs=int(9, 3)": "above the upper bound",
    "batch=choice()": "choice needs values",
    "batch=choice(32,,64)": "choice needs values",
    "batch=choice(32, 32)": "twice",
}


@pytest.mark.parametrize("item", list(SPACE_ERRORS))
def test_bad_spaces_are_one_line_errors(item, capsys, tmp_path):
    with pytest.raises(sp.SpaceError, match=re.escape(SPACE_ERRORS[item])):
        sp.parse_set(item)
    code = cli.main(["tune", str(MOONS), "--trials", "1", "--set", item,
                     "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"netc: error: --set {item}: "), err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(("item", "words"), [
    ("lr=log(1e-4, 1)", ["unknown train setting 'lr'", "--set optimizer.lr=log(1e-4, 1)?"]),
    ("optimizer.lt=log(1e-4, 1)", ["has no argument 'lt'", "takes: lr, b1"]),
    ("optimizer.b1=uniform(1, 2)", ["b1=1.5", "[0, 1)"]),
])
def test_keys_and_spaces_that_set_cannot_take_stop_before_any_trial(item, words, capsys,
                                                                     tmp_path):
    code = cli.main(["tune", str(MOONS), "--trials", "1", "--set", item,
                     "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"netc: error: --set {item}: ")
    for word in words:
        assert word in err
    assert not (tmp_path / "t").exists()


def test_misuse_exits_2(capsys, tmp_path):
    assert cli.main(["tune", str(MOONS), "--trials", "2", "--set", "epochs=5"]) == 2
    assert "at least one search space" in capsys.readouterr().err
    assert cli.main(["tune", str(MOONS), "--set", "epochs=int(1,5)"]) == 2
    assert "--trials" in capsys.readouterr().err
    assert cli.main(["tune", str(MOONS), "--trials", "0", "--set", "epochs=int(1,5)"]) == 2
    capsys.readouterr()
    code = cli.main(["tune", str(MOONS), "--trials", "1", "--set", "epochs=int(1,5)",
                     "--set", "epochs=int(2,6)"])
    assert code == 1 and "already set" in capsys.readouterr().err


# ---- the objective -------------------------------------------------------------------------

SPEC = """input 2
fc 4 -> relu -> {head}
train {{
  data {data}
  split {split}
}}
"""


@pytest.mark.parametrize(("head", "split", "expected"), [
    ("sigmoid 1", "1 0 0", "train_loss"),
    ("sigmoid 1", "0.8 0.2 0", "dev_accuracy"),
    ("softmax 2", "0.8 0.1 0.1", "dev_accuracy"),
    ("fc 1", "0.8 0.2 0", "dev_loss"),
    ("fc 1", "1 0 0", "train_loss"),
])
def test_the_objective_follows_the_loss_and_the_split(head, split, expected, tmp_path):
    net = check_source(SPEC.format(head=head, data="moons", split=split))
    assert decide(net, tmp_path).name == expected


def test_a_files_own_dev_arrays_count_as_a_dev_split(tmp_path):
    x = np.zeros((8, 2), np.float32)
    y = (np.arange(8) % 2).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_dev=x, y_dev=y)
    net = check_source(SPEC.format(head="sigmoid 1", data='"d.npz"', split="1 0 0"))
    assert decide(net, tmp_path) == Objective("dev_accuracy")
    assert Objective("dev_accuracy").direction == "maximize"
    assert Objective("train_loss").of_record({"loss": 0.5, "epoch": 3}) == 0.5


# ---- best.net ----------------------------------------------------------------------------


EDITS = [
    ["optimizer.lr=0.0031"],
    ["optimizer.lr=0.0031", "epochs=200", "optimizer.b1=0.95"],
    ["l2=0.01", "batch=full", "data.n=100"],
    ["optimizer=momentum", "optimizer.beta=0.8", "schedule=inverse_time", "schedule.decay=0.5"],
    ["optimizer.eps=1e-07", "normalize=standard", "seed=7"],
]


@pytest.mark.parametrize("overrides", EDITS)
def test_best_net_edits_the_spec_in_place_and_checks_to_the_same_settings(overrides):
    source = MOONS.read_text()
    edited = write_settings(source, overrides, "moons_adam.net")
    expected = check_source(apply_overrides(source, overrides, "m"), "m").train
    assert check_source(edited, "best.net").train == expected
    old, new = source.splitlines(), edited.splitlines()
    assert all(line in new for line in old if line.startswith("#") or "->" in line)
    assert "# sklearn.datasets.make_moons, as in the course" in edited
    # every line the overrides do not touch is kept as it was
    touched = {o.partition("=")[0].partition(".")[0] for o in overrides}
    for line in old:
        words = line.split()
        if words and words[0] not in touched:
            assert line in new, line


def test_best_net_replaces_the_value_on_its_line():
    source = MOONS.read_text()
    edited = write_settings(source, ["optimizer.lr=0.0031"], "m")
    assert edited == source.replace("lr=0.0007", "lr=0.0031")
    edited = write_settings(source, ["epochs=200"], "m")
    assert edited == source.replace("epochs 10000", "epochs 200")


def test_best_net_adds_absent_settings_inside_the_train_block():
    spec = "input 2\nfc 1  # out\ntrain {\n    data moons  # d\n}\n"
    edited = write_settings(spec, ["l2=0.01", "optimizer.lr=0.1"])
    assert edited == ("input 2\nfc 1  # out\ntrain {\n    data moons  # d\n    l2 0.01\n"
                      "    optimizer adam lr=0.1\n}\n")
    assert write_settings("input 2\nfc 1\n", ["epochs=3"]).endswith("train {\n  epochs 3\n}\n")
    one_line = write_settings("input 2\nfc 1\ntrain { epochs 3 }\n", ["l2=0.5"])
    assert check_source(one_line).train.l2 == 0.5


# ---- --refine's box ------------------------------------------------------------------------


class _Trial:  # what refine_spaces reads of Optuna's FrozenTrial
    def __init__(self, value, params, number=0, final=None):
        self.state = type("S", (), {"name": "COMPLETE"})()
        self.value, self.number = value, number
        self.user_attrs = {"params": params, "final": final}


def _record(number, accuracy, dev_loss, state="complete"):
    final = {"dev": {"accuracy": accuracy, **({} if dev_loss is None else {"loss": dev_loss})}}
    return {"number": number, "round": 1, "state": state, "reason": None, "params": {},
            "value": accuracy if state == "complete" else None, "final": final,
            "epochs_done": 5, "run": None}


def test_ties_in_the_objective_go_to_the_lower_dev_loss_then_the_lower_number():
    from netc.runtime.tune.report import best, ranked

    recs = [_record(0, 0.9, 0.30), _record(1, 0.9, 0.20), _record(2, 0.8, 0.10),
            _record(3, 0.9, None), _record(4, 0.9, 0.20), _record(5, 0.95, 0.5, "failed"),
            _record(6, 0.95, 0.4, "pruned")]
    order = [r["number"] for r in ranked(recs, Objective("dev_accuracy"))]
    assert order == [1, 4, 0, 3, 2, 6, 5]
    assert best(recs, Objective("dev_accuracy"))["number"] == 1
    # minimising: the lower objective first, ties the same way
    assert [r["number"] for r in ranked(recs[:4], Objective("train_loss"))] == [2, 1, 0, 3]
    # --refine's best quarter: tied trials ranked the same way
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 3e-5, 3e-4, 3e-3]
    dev = [0.9, 0.8, 0.1, 0.2, 0.7, 0.6, 0.5, 0.4]
    trials = [_Trial(0.75, {"optimizer.lr": lr}, n, {"dev": {"loss": d}})
              for n, (lr, d) in enumerate(zip(lrs, dev))]
    space = sp.parse_set("optimizer.lr=log(1e-5, 1)")
    [box] = refine_spaces(trials, [space], Objective("dev_accuracy"))
    assert (box.low, box.high) == (space.narrowed([1e-3, 1e-2]).low,
                                   space.narrowed([1e-3, 1e-2]).high)


def test_refine_box_surrounds_the_best_quarter_in_log_space():
    space = sp.parse_set("optimizer.lr=log(1e-5, 1)")
    lrs = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    loss = [abs(math.log10(lr) + 2.75) for lr in lrs]  # best near 10^-2.75
    [box] = refine_spaces([_Trial(v, {"optimizer.lr": lr}) for v, lr in zip(loss, lrs)],
                          [space], Objective("train_loss"))
    top = sorted(zip(loss, lrs))[:2]  # a quarter of 8
    lo, hi = math.log10(min(lr for _, lr in top)), math.log10(max(lr for _, lr in top))
    pad = 0.25 * (hi - lo) + 0.05 * 5  # of the box's width and the space's 5 decades
    assert box.low == pytest.approx(10 ** (lo - pad), rel=1e-3)
    assert box.high == pytest.approx(10 ** (hi + pad), rel=1e-3)
    assert space.low < box.low < box.high < space.high


def test_refine_keeps_the_choices_of_the_best_and_clips_to_the_space():
    trials = [_Trial(0.1 * i, {"batch": b, "l2": l2}) for i, (b, l2) in
              enumerate([(32, 0.0), (64, 0.01), (128, 0.5), ("full", 0.9)])]
    spaces = [sp.parse_set("batch=choice(32, 64, 128, full)"), sp.parse_set("l2=uniform(0, 1)")]
    batch, l2 = refine_spaces(trials, spaces, Objective("dev_loss"))
    assert batch.values == (32, 64)
    assert l2.low == 0.0 and l2.high == pytest.approx(0.01 + 0.25 * 0.01 + 0.05)
    assert refine_spaces(trials[:1], spaces, Objective("dev_loss")) is None


# ---- end to end ----------------------------------------------------------------------------


def tune(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["tune", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tune_end_to_end_then_continue_with_refine(capsys, tmp_path):
    out = tmp_path / "tune"
    code, stdout, err = tune(capsys, MOONS, "--trials", 4, "--set",
                             "optimizer.lr=log(1e-4,1)", *QUICK, "--out", out)
    assert code == 0, err
    recs = read_jsonl(out / "tune.jsonl")
    assert [r["number"] for r in recs] == [0, 1, 2, 3]
    for r in recs:
        assert set(r) == RECORD_KEYS
        assert r["state"] == "complete" and r["round"] == 1 and r["reason"] is None
        assert set(r["params"]) == {"optimizer.lr"} and 1e-4 <= r["params"]["optimizer.lr"] <= 1
        run = json.loads((Path(r["run"]) / "run.json").read_text())
        assert r["final"] == run["final"] and r["value"] == run["final"]["train"]["loss"]
        assert Path(r["run"]) == out / "trials" / f"{r['number']:04d}"
        spec = check_source((Path(r["run"]) / "spec.net").read_text()).train
        assert spec.optimizer.options["lr"] == r["params"]["optimizer.lr"]
        assert spec.epochs == 20 and spec.batch is None
    assert len({r["params"]["optimizer.lr"] for r in recs}) == 4
    best = min(recs, key=lambda r: r["value"])
    net = check_source((out / "best.net").read_text(), "best.net")
    assert net.train.optimizer.options["lr"] == best["params"]["optimizer.lr"]
    assert net.train.epochs == 20 and net.train.data.options["n"] == 100
    assert "# sklearn.datasets.make_moons" in (out / "best.net").read_text()
    assert cli.main(["check", str(out / "best.net")]) == 0
    capsys.readouterr()
    assert (out / "tune.png").stat().st_size > 1000
    # the table, ranked: the best trial's row first
    assert "ranked by train loss" in stdout
    rows = [line for line in stdout.splitlines() if "complete" in line]
    assert len(rows) == 4 and rows[0].split("│")[2].strip() == str(best["number"])

    # the same --out continues the study: numbers go on; --refine adds round 2
    code, stdout, err = tune(capsys, MOONS, "--trials", 2, "--refine", "--set",
                             "optimizer.lr=log(1e-4,1)", *QUICK, "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["added"] == [4, 5, 6, 7]
    recs = read_jsonl(out / "tune.jsonl")
    assert [r["number"] for r in recs] == list(range(8))
    assert [r["round"] for r in recs] == [1] * 6 + [2] * 2
    first = [r for r in recs if r["round"] == 1]
    top = sorted(first, key=lambda r: r["value"])[:2]  # a quarter of 6, at least 2
    logs = [math.log10(r["params"]["optimizer.lr"]) for r in top]
    pad = 0.25 * (max(logs) - min(logs)) + 0.05 * 4
    for r in recs[6:]:
        assert min(logs) - pad - 1e-3 <= math.log10(r["params"]["optimizer.lr"]) \
            <= max(logs) + pad + 1e-3
    assert summary["best"] == min(recs, key=lambda r: r["value"])
    assert summary["trials"] == {"complete": 8, "pruned": 0, "failed": 0, "running": 0}
    assert summary["objective"] == {"name": "train_loss", "direction": "minimize"}


def test_two_workers_share_one_study(capsys, tmp_path):
    journal = tmp_path / "shared.journal"
    code, _, err = tune(capsys, MOONS, "--trials", 4, "--workers", 2, "--set",
                        "optimizer.lr=log(1e-3,1)", *QUICK, "--storage", journal,
                        "--out", tmp_path / "a")
    assert code == 0, err
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    quiet_optuna()
    study = optuna.load_study(study_name="moons_adam",
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert Counter(t.user_attrs["worker"] for t in trials) == {0: 2, 1: 2}
    assert len({t.user_attrs["params"]["optimizer.lr"] for t in trials}) == 4
    assert all(t.state.name == "COMPLETE" for t in trials)
    # a second command (another machine) adds to the same study through --storage
    code, stdout, err = tune(capsys, MOONS, "--trials", 1, "--set", "optimizer.lr=log(1e-3,1)",
                             *QUICK, "--storage", journal, "--out", tmp_path / "b", "--json")
    assert code == 0, err
    assert json.loads(stdout)["added"] == [4]
    assert [r["number"] for r in read_jsonl(tmp_path / "b" / "tune.jsonl")] == [0, 1, 2, 3, 4]


LINEAR = """# a linear regression on the moons labels: lr=1e6 diverges
input 2
fc 1
train {
  data moons n=100
  split 1 0 0
  optimizer gd lr=0.1
  batch full
  epochs 20
}
"""


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(capsys, tmp_path):
    spec = tmp_path / "lin.net"
    spec.write_text(LINEAR)
    code, stdout, err = tune(capsys, spec, "--trials", 4, "--set",
                             "optimizer.lr=choice(0.1, 1e6)", "--out", tmp_path / "t")
    assert code == 0, err
    recs = read_jsonl(tmp_path / "t" / "tune.jsonl")
    states = {r["params"]["optimizer.lr"]: r["state"] for r in recs}
    assert states == {0.1: "complete", 1e6: "failed"}
    for r in recs:
        if r["state"] == "failed":
            assert "the loss became" in r["reason"] and r["value"] is None
            assert r["final"] is None
    assert recs[-1]["number"] == 3  # trials after a failure ran
    assert "failed" in stdout
    assert check_source((tmp_path / "t" / "best.net").read_text()).train.optimizer.options == \
        {"lr": 0.1}


def test_a_sample_the_setting_rejects_fails_that_trial_only(capsys, tmp_path):
    code, _, err = tune(capsys, MOONS, "--trials", 3, "--set", "optimizer=momentum",
                        "--set", "optimizer.beta=choice(0.9, 1.5)", *QUICK,
                        "--out", tmp_path / "t")
    assert code == 0, err
    recs = read_jsonl(tmp_path / "t" / "tune.jsonl")
    for r in recs:
        bad = r["params"]["optimizer.beta"] == 1.5
        assert r["state"] == ("failed" if bad else "complete")
        if bad:
            assert r["reason"].startswith("bad sample: --set optimizer.beta=1.5")
    assert {r["state"] for r in recs} == {"failed", "complete"}


def test_prune_stops_hopeless_trials(capsys, tmp_path):
    # half the trials learn (lr 0.05), half barely move (lr 1e-5): once five have completed,
    # the median pruner stops a hopeless one at its first report
    code, _, err = tune(capsys, MOONS, "--trials", 10, "--prune", "--set",
                        "optimizer.lr=choice(0.05, 1e-5)", *QUICK, "--out", tmp_path / "t")
    assert code == 0, err
    recs = read_jsonl(tmp_path / "t" / "tune.jsonl")
    pruned = [r for r in recs if r["state"] == "pruned"]
    assert pruned and all(r["params"]["optimizer.lr"] == 1e-5 for r in pruned)
    for r in pruned:
        assert r["epochs_done"] < 20 and r["final"] is None and r["value"] is None
        metrics = (Path(r["run"]) / "metrics.jsonl").read_text().splitlines()
        assert len(metrics) == r["epochs_done"]
    assert all(r["state"] == "complete" for r in recs if r["params"]["optimizer.lr"] == 0.05)


def test_tune_searches_a_layer_option(capsys, tmp_path):
    """A space over dropout's keep: each trial's spec.net holds its own keep (the trials
    differ in their program, so each trains on its own), best.net edits the layer in
    place, and the report names the key."""
    spec = tmp_path / "d.net"
    spec.write_text(MOONS.read_text().replace("fc 5 -> relu ->",
                                              "fc 5 -> relu -> dropout keep=0.9 ->"))
    out = tmp_path / "tune"
    code, stdout, err = tune(capsys, spec, "--trials", 3, "--set", "dropout_1.keep=uniform(0.5,1)",
                             *QUICK, "--out", out)
    assert code == 0, err
    recs = read_jsonl(out / "tune.jsonl")
    assert [r["state"] for r in recs] == ["complete"] * 3
    keeps = []
    for r in recs:
        text = (Path(r["run"]) / "spec.net").read_text()
        keep = r["params"]["dropout_1.keep"]
        assert 0.5 <= keep <= 1 and f"dropout keep={sp.show(keep)} ->" in text
        assert check_source(text).leaves()[2].attrs["keep"] == keep
        keeps.append(keep)
    assert len(set(keeps)) == 3
    best = min(recs, key=lambda r: r["value"])
    best_text = (out / "best.net").read_text()
    assert f"fc 5 -> relu -> dropout keep={sp.show(best['params']['dropout_1.keep'])} ->" \
        in best_text
    assert "# sklearn.datasets.make_moons" in best_text  # the rest as written
    assert "dropout_1.keep" in stdout and f"best: trial {best['number']}" in stdout


def test_tune_searches_a_layer_size_and_checks_the_key_first(capsys, tmp_path):
    out = tmp_path / "tune"
    code, _, err = tune(capsys, MOONS, "--trials", 2, "--set", "fc_1.units=int(3, 9)",
                        *QUICK, "--out", out)
    assert code == 0, err
    for r in read_jsonl(out / "tune.jsonl"):
        net = check_source((Path(r["run"]) / "spec.net").read_text())
        assert net.leaves()[0].out_shape == (r["params"]["fc_1.units"],)
    code, _, err = tune(capsys, MOONS, "--trials", 2, "--set", "fc_9.units=int(3, 9)",
                        "--out", tmp_path / "bad")
    assert code == 1 and ("--set fc_9.units=int(3, 9): no train setting or layer is named "
                          "'fc_9' (did you mean fc_2?") in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
