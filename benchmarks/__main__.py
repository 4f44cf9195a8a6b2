"""`python -m benchmarks [--quick] [--only NAME]`: every benchmark, each figure beside its baseline.

Each module `benchmarks/bench_*.py` has `run(quick: bool) -> list[Result]`.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="shorter runs (for a smoke test)")
    parser.add_argument("--only", help="run only benchmarks whose module name contains this")
    args = parser.parse_args(argv)
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_") and (not args.only or args.only in m.name))
    table = Table(title="Dhan Trading System benchmarks")
    for col in ("benchmark", "ours", "baseline", "baseline value", "ratio", "note"):
        table.add_column(col)
    console = Console(width=200)
    for name in names:
        started = time.perf_counter()
        console.print(f"[bold]running {name}[/]")
        for r in importlib.import_module(f"benchmarks.{name}").run(args.quick):
            ratio = f"{r.ratio:.1f}x" if r.ratio else "-"
            base = f"{r.baseline:,.1f} {r.unit}" if r.baseline else "-"
            table.add_row(r.name, f"{r.ours:,.1f} {r.unit}", r.baseline_name or "-", base, ratio, r.note)
        console.print(f"  {name} took {time.perf_counter() - started:.0f} s")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
