"""Gradient codes side by side: load, certified worst case, and the worst decode a search finds.

For every (n, s) of a sweep (n ≤ 1024, s ≤ 60) and of the paper's configurations, builds the
cyclic code (the papers'), the group code (gcode's default) and FR, and reports per code:

* ``load`` and its excess over (s+1)/n; the message dtype;
* ``certified`` and, when it is, the worst amplification A and error factor E over every decode
  set (gcode.codes.exactness: ‖decoded − Σg‖ ≤ E·‖Σ|g_j|‖);
* the adversarial search (gcode.sim.adversarial): the worst *unchecked* error factor it found
  (what the decode would be without the per-set check), the relative error such an unchecked
  decode gives on random fp32 chunk gradients, and how many searched sets the scheme refused;
* ``max_rel_error``: the worst relative error of the decodes gcode actually made on the searched
  patterns (`gcode verify --adversarial`), with ``failures`` (jobs that missed 1e-6 or their
  deadline).

Writes benchmarks/results/bench_codes.json and bench_codes.md.

    python benchmarks/bench_codes.py [--evaluations 2000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gcode.codes import GradientCoding, make_scheme
from gcode.codes.cyclic import CyclicRepetitionCode
from gcode.codes.gc import FractionalRepetitionCode
from gcode.codes.group import GroupCode
from gcode.sim.adversarial import verify_adversarial

CODES = {"cyclic": CyclicRepetitionCode, "group": GroupCode, "fr": FractionalRepetitionCode}
SWEEP_N = (8, 16, 32, 64, 128, 256, 512, 1024)
SWEEP_S = (1, 2, 4, 8, 15, 16, 27, 30, 40, 60)
#: the paper's configurations at n = 256, and the scheme each code then serves
PAPER = [("gc", {"s": 15}), ("gc", {"s": 11}), ("srsgc", {"B": 2, "W": 3, "lam": 23}),
         ("msgc", {"B": 1, "W": 2, "lam": 27}), ("msgc", {"B": 2, "W": 3, "lam": 23})]
RESULTS = Path(__file__).resolve().parent / "results"


def unchecked_relative_error(code, stragglers: np.ndarray, rng: np.random.Generator) -> float:
    """The relative error of decoding ``~stragglers`` by the code's unchecked vector, messages
    of random fp32 chunk gradients rounded to the code's dtype (what no check would give)."""
    workers, a = code.unchecked_decode(~stragglers)
    g = rng.standard_normal((code.num_parts, 16)).astype(np.float32).astype(np.float64)
    messages = (code.encoding[workers] @ g).astype(code.message_dtype).astype(np.float64)
    truth = g.sum(axis=0)
    return float(np.linalg.norm(a @ messages - truth) / np.linalg.norm(truth))


def code_row(kind: str, n: int, s: int, evaluations: int) -> dict:
    start = time.perf_counter()
    try:
        code = CODES[kind](n, s)
    except ValueError as exc:
        return {"code": kind, "n": n, "s": s, "refused": str(exc)}
    built = time.perf_counter() - start
    report, search = verify_adversarial(lambda: _gc(n, s, code), 0, evaluations, keep=2, dim=16)
    worst = np.isin(np.arange(n), search["worst_stragglers"])
    return {
        "code": kind, "n": n, "s": s, "load": code.load, "load_excess": code.load * n / (s + 1) - 1,
        "message_dtype": code.message_dtype.name, "certified": code.certified,
        "amplification": code.amplification if code.certified else None,
        "error_bound": code.error_bound if code.certified else None,
        "searched_unchecked_error": search["worst_unchecked_error"],
        "searched_amplification": search["worst_amplification"],
        "unchecked_rel_error": (unchecked_relative_error(code, worst, np.random.default_rng([n, s]))
                                if s else 0.0),
        "max_rel_error": report.max_rel_error, "failures": report.failures,
        "refused_rounds": report.refused_rounds, "min_norm_decodes": report.min_norm_decodes,
        "search_sets": search["sets"], "build_s": built,
    }


def _gc(n: int, s: int, code) -> GradientCoding:
    return GradientCoding(n, s, jobs=2, code=code)


def paper_row(name: str, params: dict, kind: str, evaluations: int) -> dict:
    make = lambda: make_scheme(name, n=256, jobs=2, gc_code=kind, **params)
    scheme = make()
    cyclic = make_scheme(name, n=256, gc_code="cyclic", **params)
    report, search = verify_adversarial(make, 0, evaluations, keep=2, dim=16)
    return {"scheme": name, "params": params, "code": kind, "load": scheme.load,
            "load_vs_cyclic": scheme.load / cyclic.load, "message_dtype": np.dtype(scheme.message_dtype).name,
            "certified": scheme.certified, "error_bound": scheme.decode_checks["error_bound"],
            "searched_unchecked_error": search["worst_unchecked_error"],
            "max_rel_error": report.max_rel_error, "failures": report.failures,
            "refused_rounds": report.refused_rounds, "extra_repeats": report.extra_repeats}


def fmt(value, spec=".2e") -> str:
    if value is None:
        return "—"
    return format(value, spec) if isinstance(value, float) else str(value)


PAPER_HEADER = ("| scheme | params | code | load | load / cyclic's | dtype | certified | E bound | "
                "searched unchecked E | max rel error | failures | waits |")
SWEEP_HEADER = ("| n | s | code | load | excess | dtype | certified | A | E bound | searched unchecked E "
                "| unchecked rel error | max rel error | failures | waits | build s |")


def paper_markdown(paper: list[dict]) -> str:
    lines = [PAPER_HEADER, "|" + "---|" * 12]
    for r in paper:
        params = ",".join(str(v) for v in r["params"].values())
        lines.append(f"| {r['scheme']} | ({params}) | {r['code']} | {r['load']:.5f} | "
                     f"{r['load_vs_cyclic']:.4f} | "
                     f"{r['message_dtype']} | {r['certified']} | {fmt(r['error_bound'])} | "
                     f"{fmt(r['searched_unchecked_error'])} | {fmt(r['max_rel_error'])} | {r['failures']} | "
                     f"{r['refused_rounds']} |")
    return "\n".join(lines)


def summary_markdown(sweep: list[dict]) -> str:
    """One row per code over the whole sweep."""
    header = ("| code | (n, s) | certified | fp32 | load excess: mean, max | waits | worst unchecked "
              "rel error found | worst decoded rel error | failures |")
    lines = [header, "|" + "---|" * 9]
    for kind in CODES:
        rows = [r for r in sweep if r["code"] == kind and "load" in r]
        lines.append(f"| {kind} | {len(rows)} | {sum(r['certified'] for r in rows)} | "
                     f"{sum(r['message_dtype'] == 'float32' for r in rows)} | "
                     f"{100 * np.mean([r['load_excess'] for r in rows]):.1f}%, "
                     f"{100 * max(r['load_excess'] for r in rows):.1f}% | "
                     f"{sum(r['refused_rounds'] for r in rows)} | "
                     f"{max(r['unchecked_rel_error'] for r in rows):.2e} | "
                     f"{max(r['max_rel_error'] for r in rows):.2e} | {sum(r['failures'] for r in rows)} |")
    return "\n".join(lines)


def sweep_markdown(sweep: list[dict], sizes=None) -> str:
    lines = [SWEEP_HEADER, "|" + "---|" * 15]
    for r in sweep:
        if sizes is not None and r["n"] not in sizes:
            continue
        if "refused" in r:
            lines.append(f"| {r['n']} | {r['s']} | {r['code']} | refused: {r['refused']} |" + " |" * 11)
            continue
        lines.append(f"| {r['n']} | {r['s']} | {r['code']} | {r['load']:.5f} | "
                     f"{100 * r['load_excess']:.1f}% | "
                     f"{r['message_dtype']} | {r['certified']} | {fmt(r['amplification'], '.3g')} | "
                     f"{fmt(r['error_bound'])} | {fmt(r['searched_unchecked_error'])} | "
                     f"{fmt(r['unchecked_rel_error'])} | {fmt(r['max_rel_error'])} | {r['failures']} | "
                     f"{r['refused_rounds']} | {r['build_s']:.2f} |")
    return "\n".join(lines)


def results_markdown(doc: dict) -> str:
    """docs/RESULTS.md's section: the paper's configurations, the summary, n = 256 and 1024."""
    return (f"The paper's configurations (n = 256):\n\n{paper_markdown(doc['paper'])}\n\n"
            f"Over the sweep ({doc['evaluations']} evaluations per code):\n\n{summary_markdown(doc['sweep'])}"
            f"\n\nn = 256 and 1024 (every n in benchmarks/results/bench_codes.md):\n\n"
            f"{sweep_markdown(doc['sweep'], (256, 1024))}")


def markdown(doc: dict) -> str:
    evaluations = doc["evaluations"]
    return "\n".join([
        "# Gradient codes: load, certificate, and the worst decode a search finds",
        "",
        (f"`python benchmarks/bench_codes.py --evaluations {evaluations}`. Per code: load (excess over "
         "(s+1)/n), message dtype, the certified worst amplification A and error factor E "
         "(‖decoded − Σg‖ ≤ E·‖Σ|g_j|‖; cyclic codes beyond small n are checked per decode set "
         "instead), the worst error factor of an *unchecked* decode found by the adversarial search "
         "and the relative error such a decode gives on random fp32 chunk gradients (what gcode did "
         "before the check), then what gcode does now on the searched patterns: the worst relative "
         "error of its decodes, failures (over 1e-6 or past the deadline) and rounds it waited "
         "because a set missed the budget. `build s` is the code's construction in this process; "
         "the group code's certificate is cached per group shape, so only the first code of a "
         "shape pays for it (about 2 s for 64 nodes and ρ = 3)."),
        "", "## The paper's configurations (n = 256)", "", paper_markdown(doc["paper"]),
        "", "## Summary", "", summary_markdown(doc["sweep"]),
        "", "## Sweep", "", sweep_markdown(doc["sweep"]), ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=2000,
                        help="straggler sets the search scores per cyclic code (default 2000)")
    parser.add_argument("--quick", action="store_true", help="n <= 256 and 200 evaluations (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON and markdown")
    args = parser.parse_args(argv)
    evaluations = 200 if args.quick else args.evaluations
    sizes = [n for n in SWEEP_N if not args.quick or n <= 256]
    paper = [paper_row(name, params, kind, evaluations) for name, params in PAPER for kind in CODES]
    sweep = []
    for n in sizes:
        for s in (s for s in SWEEP_S if s < n):
            for kind in CODES:
                row = code_row(kind, n, s, evaluations)
                sweep.append(row)
                print(json.dumps({k: row[k] for k in ("code", "n", "s", "load", "certified", "max_rel_error",
                                                      "refused_rounds") if k in row}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"evaluations": evaluations, "paper": paper, "sweep": sweep}
    (args.out / "bench_codes.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "bench_codes.md").write_text(markdown(doc))
    print(f"wrote {args.out / 'bench_codes.json'} and bench_codes.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
