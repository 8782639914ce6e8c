"""`python -m bench`: every benchmark, each figure beside the floor measured in the same run.

Writes DIR/results.json (merged with what is there), re-renders the tables of bench/README.md
between their `<!-- bench:NAME -->` markers, and draws DIR/NAME.png for each benchmark.

- `python -m bench` (full; DIR is bench/, README is bench/README.md);
- `python -m bench --quick` (small counts, every benchmark, no thresholds; DIR is a new temp
  dir, and the README there is a copy, so quick numbers never land in the repository by chance);
- `--only NAME` (repeatable), `--out DIR`, `--readme PATH`, `--no-plots`;
- `--from-json PATH`: re-render the README and plots from a results file, measuring nothing.

Exits 1 when a benchmark fails (an error or its time limit), never because a number is slow.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.runner import BENCHMARKS, BY_NAME

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small counts (1-2 min)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BY_NAME),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BY_NAME)}",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="results.json and PNGs (default: see above)"
    )
    parser.add_argument(
        "--readme", type=Path, metavar="PATH", help="the README whose tables are re-rendered"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    parser.add_argument("--from-json", type=Path, metavar="PATH", help="render only, from PATH")
    return parser.parse_args(argv)


def _places(args: argparse.Namespace) -> tuple[Path, Path]:
    """(out dir, README to re-render); a README outside bench/ starts as a copy of bench's."""
    if args.out is not None:
        out = args.out
    elif args.from_json is not None:
        out = args.from_json.parent
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="bench-quick-"))
    else:
        out = BENCH_DIR
    readme = args.readme
    if readme is None:
        readme = README if out.resolve() == BENCH_DIR else out / "README.md"
    if not readme.exists():
        readme.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(README, readme)
    return out, readme


def measure(names: list[str], quick: bool) -> tuple[dict[str, Any], list[str]]:
    """Run `names` in order; (their results.json entries, the names that failed)."""
    entries: dict[str, Any] = {}
    failed: list[str] = []
    date = report.now()
    for name in names:
        bench = BY_NAME[name]
        print(f"\n-- {name}: running ({'quick' if quick else 'full'})", flush=True)
        started = time.monotonic()
        try:
            outcome = bench.run(quick)
        except Exception:  # noqa: BLE001 - one failed benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            continue
        wall_s = time.monotonic() - started
        report.print_outcome(bench.title, outcome.figures, wall_s)
        entries[name] = report.entry(bench.title, outcome, quick, wall_s, date)
    return entries, failed


def render(results: dict[str, Any], readme: Path, out: Path, plots: bool) -> None:
    text = readme.read_text(encoding="utf-8")
    lacking = report.missing_markers(text, list(results["benchmarks"]))
    if lacking:
        print(f"{readme}: no markers for {', '.join(lacking)}; those tables are not written")
    updated = report.update_readme(text, results)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    print(f"\nREADME tables: {readme}")
    if plots:
        from bench.plots import plot_all  # noqa: PLC0415 - matplotlib only when plotting

        for path in plot_all(results, out):
            print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    out, readme = _places(args)
    if args.from_json is not None:
        results = json.loads(args.from_json.read_text(encoding="utf-8"))
        render(results, readme, out, not args.no_plots)
        return 0
    names = args.only or [b.name for b in BENCHMARKS]
    started = time.monotonic()
    entries, failed = measure(list(dict.fromkeys(names)), args.quick)
    results = report.write_results(out / "results.json", entries, args.quick, report.now())
    print(f"\nresults: {out / 'results.json'} ({time.monotonic() - started:.0f} s in all)")
    render({**results, "benchmarks": entries}, readme, out, not args.no_plots)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
