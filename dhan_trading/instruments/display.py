"""`instruments [--mcx] [--json]`: show the universe the F&O feed would subscribe.

Reads the configured scrip master directly (never the database), so it works before anything
else has run; `--json` prints the stable shape documented in docs/INSTRUMENTS.md for scripts.
"""
from __future__ import annotations

import argparse
import logging
import sys
from datetime import date

import orjson

from .. import exitcodes
from ..config import ConfigError, get_settings
from ..logs import setup_logging
from .master import MasterError, ist_today, load_master
from .universe import CATEGORIES, Universe, select_universe

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
    except (ConfigError, MasterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.FATAL
    universe = select_universe(instruments, today=today, index_prices=dict(args.price), mcx=args.mcx,
                               stocks=settings.universe_stocks, strikes=settings.universe_strikes)
    if args.json:
        sys.stdout.write(orjson.dumps(universe.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _show(universe, settings.instruments_csv)
    return exitcodes.OK


def _show(universe: Universe, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"F&O universe for {universe.date:%Y-%m-%d} ({len(universe.subscriptions)} instruments)")
    for column in ("category", "segment", "security id", "mode", "symbol"):
        table.add_column(column, justify="right" if column == "security id" else "left")
    for s in universe.subscriptions:
        table.add_row(s.category, s.exchange_segment, str(s.security_id), s.mode, s.symbol)
    console.print(table)
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
        console.print(f"[yellow]note:[/yellow] {note}")
    console.print(f"source: {source}", style="dim")


if __name__ == "__main__":
    sys.exit(main())
