"""`python -m dhan_trading <command>`: one entry point for every command of the suite.

Each command lives in its own module with a `main(argv) -> int`; this table only names them,
so `--help` stays fast and a command's heavy imports load only when it runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("dhan_trading.demo", "the whole pipeline on the simulator (embedded Redis + SQLite): "
             "demo [--duration S] [--gui]"),
    "simulator": ("dhan_trading.simulator.server", "the local Dhan-protocol exchange simulator: "
                  "simulator [--host H] [--port P] [--rate R] [--seed N]"),
    "replay": ("dhan_trading.simulator.replay", "serve a recorded raw-frame capture: replay FILE [--speed X]"),
    "feed": ("dhan_trading.market_feed.launcher", "the F&O feed (same as launch_fno_feed.py): "
             "feed [--force] [--mcx]"),
    "writer": ("dhan_trading.subscribers.fno_db_writer", "the batching DB writer"),
    "instruments": ("dhan_trading.instruments.display", "show the instrument universe: "
                    "instruments [--mcx] [--json]"),
    "services": ("dhan_trading.services.cli", "manage services: services list|status|start|stop|"
                 "restart|start-all|stop-all|logs NAME"),
    "scheduler": ("dhan_trading.scheduler.market_scheduler", "the market scheduler: "
                  "scheduler [--plan DATE --json] [--dry-run]"),
    "redis": ("dhan_trading.redis_service", "the embedded Redis: redis start|stop|status [--json] "
              "(redis watch is the supervisor's redis service)"),
    "check": ("dhan_trading.test_all_services", "check Redis, the database and every service's health"),
}


# The suite's programs that are not subcommands (DESIGN §3.1), listed by --help too.
PROGRAMS: tuple[tuple[str, str], ...] = (
    ("python launch_dhan_control_center.py", "the Qt control center"),
    ("python launch_fno_feed.py [--force] [--mcx]", "the F&O feed"),
    ("python display_fno_instruments.py", "the instrument universe the feed would subscribe"),
    ("python -m dhan_trading.subscribers.fno_db_writer", "the batching DB writer"),
    ("python -m dhan_trading.scheduler.market_scheduler [--plan DATE --json]", "the market scheduler"),
    ("python -m dhan_trading.visualizers.NAME", "volume_profile, market_breadth, tick_chart, "
     "volume_profile_chart, quote_visualizer (terminal)"),
    ("python -m dhan_trading.services.monitor", "the FNO Services Monitor window"),
    ("python -m dhan_trading.test_all_services", "is the running system healthy? (exit 0 if so)"),
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m dhan_trading",
        description="Dhan Trading System. Run `python -m dhan_trading COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\nother programs of the suite:\n" + "\n".join(f"  {cmd}\n      {text}" for cmd, text in PROGRAMS))
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    if not argv:  # no command: show what there is (exit 2, a usage error, for scripts)
        parser.print_help()
        return 2
    ns = parser.parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[ns.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
