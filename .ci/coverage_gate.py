"""CI's coverage gate: the suite's line coverage (child processes included, see .coveragerc)
must be at least 85% overall and 95% for the packages whose every line matters.
Reads the data file the test run left; prints one line per gated scope; exit 1 below a bar."""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import coverage

OVERALL = 85.0
PACKAGES = {"dhan_trading/protocol/": 95.0, "dhan_trading/market_feed/": 95.0,
            "dhan_trading/subscribers/": 95.0, "dhan_trading/analytics/": 95.0}


def main() -> int:
    cov = coverage.Coverage()
    cov.load()
    root = Path.cwd().resolve()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in sorted((root / "dhan_trading").rglob("*.py")):  # never-imported files count too
        _, statements, _, missing, _ = cov.analysis2(str(path))
        rel = path.relative_to(root).as_posix()
        for scope in ["overall"] + [p for p in PACKAGES if rel.startswith(p)]:
            totals[scope][0] += len(statements)
            totals[scope][1] += len(statements) - len(missing)
    failed = False
    for scope, bar in [("overall", OVERALL), *PACKAGES.items()]:
        statements, covered = totals[scope]
        pct = 100.0 * covered / statements if statements else 0.0
        ok = pct >= bar
        failed |= not ok
        print(f"coverage {scope:<28} {pct:5.1f}%  (bar {bar:.0f}%)  {'ok' if ok else 'BELOW THE BAR'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
