"""`instruments [--mcx] [--json]`: show the universe the F&O feed would subscribe.

Reads the configured scrip master directly (never the database), so it works before anything
else has run; `--json` prints the stable shape documented in docs/INSTRUMENTS.md for scripts.
With DHAN_WATCHLIST set it shows what the watchlist gives (or every bad line, exit FATAL).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import orjson

from .. import exitcodes
from ..config import ConfigError, get_settings
from ..logs import setup_logging
from .master import MasterError, ist_today, load_master
from .nifty50 import Constituents, read_constituents
from .universe import CATEGORIES, Universe, feed_universe

log = logging.getLogger(__name__)


def _price(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip().upper(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PRICE (e.g. NIFTY=26010.5)") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="display_fno_instruments.py",
        description="Show the instrument universe the F&O feed would subscribe (no database needed).")
    parser.add_argument("--mcx", action="store_true", help="add the near-month MCX futures")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument("--date", type=date.fromisoformat, default=None,
                        help="select as of this day, YYYY-MM-DD (default: today in IST)")
    parser.add_argument("--price", type=_price, action="append", default=[], metavar="NAME=PRICE",
                        help="last index price for ATM, e.g. --price NIFTY=26010 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = get_settings()
        setup_logging("instruments", settings)
        today = args.date or ist_today()
        instruments = load_master(settings, today=today, progress=not args.json and sys.stderr.isatty())
        universe = feed_universe(settings, instruments, today=today, index_prices=dict(args.price), mcx=args.mcx)
    except (ConfigError, MasterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    for warning in universe.warnings:
        log.warning("%s", warning)
    nifty50 = read_constituents(settings.nifty50_csv) if "nifty50" in universe.counts() else None
    if args.json:
        data = universe.to_json()
        if nifty50 is not None:
            data["nifty50"] = {"as_of": nifty50.as_of.isoformat(), "source": nifty50.source,
                               "file": str(nifty50.path), "weights": nifty50.weights}
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _show(universe, settings.instruments_csv, settings.watchlist, nifty50)
    return exitcodes.OK


def _show(universe: Universe, source: str, watchlist: Path | None, nifty50: Constituents | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)  # a pipe gets whole symbols, unwrapped
    what = f"watchlist {watchlist}" if watchlist else "F&O universe"
    table = Table(title=f"{what} for {universe.date:%Y-%m-%d} ({len(universe.subscriptions):,} instruments)")
    for column in ("category", "segment", "security id", "mode", "symbol", "weight %"):
        table.add_column(column, justify="right" if column in ("security id", "weight %") else "left")
    weights = nifty50.weights if nifty50 else {}
    for s in universe.subscriptions:
        weight = f"{weights[s.symbol]:.2f}" if s.category == "nifty50" and s.symbol in weights else ""
        table.add_row(s.category, s.exchange_segment, str(s.security_id), s.mode, s.symbol, weight)
    console.print(table)
    if watchlist:
        per = Table(title="per segment and mode")
        for column in ("segment", "mode", "count"):
            per.add_column(column, justify="right" if column == "count" else "left")
        for (segment, mode), count in sorted(Counter((s.exchange_segment, s.mode) for s in universe.subscriptions).items()):
            per.add_row(segment, mode, f"{count:,}")
        console.print(per)
    summary = Table(title="per category")
    summary.add_column("category")
    summary.add_column("count", justify="right")
    counts = universe.counts()
    for category in CATEGORIES:
        if category in counts:
            summary.add_row(category, str(counts[category]))
    summary.add_row("total", str(len(universe.subscriptions)), style="bold")
    console.print(summary)
    for name, strike in universe.atm.items():
        console.print(f"{name} options around ATM {strike:g}")
    for note in universe.notes:
        console.print(f"note: {note}")
    for warning in universe.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}")
    if nifty50 is not None:
        console.print(f"Nifty 50 list and weights as of {nifty50.as_of} from {nifty50.path}: {nifty50.source}",
                      style="dim")
    console.print(f"source: {source}", style="dim")


if __name__ == "__main__":
    sys.exit(main())
