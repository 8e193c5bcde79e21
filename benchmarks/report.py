"""RESULTS.md from a run's results (the document run.py writes to results.json): a table per
case (min / median over the repeats, ratios against the case's reference contender), the
Method notes, then FINDINGS.md."""

from __future__ import annotations

from pathlib import Path

from cases import CASES, Case, method_notes

HERE = Path(__file__).resolve().parent


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def ratio(case, name, key, summary):
    ref = summary.get(case.reference, {}).get(key)
    me = summary.get(name, {}).get(key)
    if not (ref and me) or not ref["median"]:
        return None
    return me["median"] / ref["median"]


def header(doc):
    s = doc["settings"]
    L = ["# netc benchmark results", ""]
    L.append(f"Command: `{doc['command']}`  ")
    L.append(
        f"Date: {doc['date']}; repeats per figure: {s['repeats']}"
        + ("; **--quick (tiny sizes, not comparable)**" if s["quick"] else "")
    )
    L += ["", "## Machine", ""]
    m = doc["machine"]
    L.append(
        f"- CPU: {m['cpu_model']}; logical CPUs {m['logical_cpus']}, physical cores "
        f"{m['physical_cores']}, usable (affinity) {m['affinity_cpus']}; "
        f"memory {m['mem_gb']:.1f} GiB"
    )
    L.append(f"- {m['platform']}")
    L.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    L += [
        "",
        "Each cell is `min / median` over the repeats (separate processes). Ratios use "
        "medians against the case's reference contender: for times, ×ref > 1 means slower "
        "than the reference; for throughputs (img/s, GFLOP/s), ×ref > 1 means faster. "
        "`bg` is the background load from other processes (busy cores, max over the "
        "repeats of the larger of: just before the run, and averaged during it); a run with "
        "bg > 0.5 is re-taken once (`--retries`) and figures with bg ≳ 0.3 were taken on a "
        "contended machine.",
        "",
    ]
    if doc.get("discarded_contended_runs"):
        L += [
            "Runs re-taken because other processes were busy (kept in results.json): "
            + ", ".join(f"{k} ×{len(v)}" for k, v in doc["discarded_contended_runs"].items()),
            "",
        ]
    return L


def table(case, results):
    """The case's table: a row per contender, a column per figure, then its ratios."""
    figs = case.figures
    ratio_figs = [f for f in figs if f.ratio] if len(results["summary"]) > 1 else []
    head = ["contender"] + [f.label for f in figs]
    head += [f"×ref {f.label}" for f in ratio_figs]
    head += ["expected (ref. machine)", "bg"]
    L = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, summ in results["summary"].items():
        runs = results["runs"][name]
        skipped = next((r["skipped"] for r in runs if "skipped" in r), None)
        err = next((r["error"] for r in runs if "error" in r), None)
        row = [f"`{name}`" + (" (ref)" if name == case.reference else "")]
        if skipped or (err and not summ):
            msg = f"skipped: {skipped}" if skipped else "error (see results.json)"
            L.append("| " + " | ".join(row + [msg] + [""] * (len(head) - 2)) + " |")
            continue
        for f in figs:
            v = summ.get(f.key)
            row.append(
                "–"
                if v is None
                else (
                    fmt(v["min"], f.spec)
                    if v["min"] == v["median"]
                    else f"{fmt(v['min'], f.spec)} / {fmt(v['median'], f.spec)}"
                )
            )
        for f in ratio_figs:
            r = ratio(case, name, f.key, results["summary"])
            row.append("–" if r is None else f"{r:.2f}")
        row.append(", ".join(f"{k} {v}" for k, v in case.expected.get(name, {}).items()))
        bgs = [max(r.get("bg_cores", 0.0), r.get("bg_during", 0.0)) for r in runs]
        row.append(f"{max(bgs):.2f}" if bgs else "")
        L.append("| " + " | ".join(row) + " |")
    return L


def write_markdown(path, doc):
    L = header(doc)
    for name, results in doc["cases"].items():
        # a case no longer registered still gets its (bare) table
        case = CASES.get(name) or Case(name, title=name, reference="", contenders=[], figures=[])
        L += [f"## {case.title}{case.sizes_in_title(doc['settings'])}", ""]
        L += table(case, results)
        L.append("")
        L += case.notes(case, results)
    L += ["## Method", ""] + [f"- {x}" for x in method_notes()] + [""]
    findings = HERE / "FINDINGS.md"  # the goals and what the committed run showed
    if findings.exists():
        L += [findings.read_text()]
    Path(path).write_text("\n".join(L))
