"""Configuration: defaults, validation errors that name the variable and the fix, secret masking."""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dhan_trading.config import (DHAN_SCRIP_MASTER_URL, PROJECT_ROOT, SAMPLE_INSTRUMENTS_CSV, ConfigError,
                                 Secret, load_settings, mask_url)
from dhan_trading.logs import MaskSecrets, setup_logging

pytestmark = pytest.mark.unit


def test_defaults_run_everything_embedded(settings_env):
    s = settings_env()
    assert s.redis_url is None and not s.mysql_configured
    assert s.database_url().startswith("sqlite:///") and s.database_url().endswith("dhan_trading.sqlite3")
    assert s.feed_url == "wss://api-feed.dhan.co" and s.uses_dhan
    assert s.instruments_csv == DHAN_SCRIP_MASTER_URL  # the real master when the feed points at Dhan
    assert s.feed_stall_timeout == 60.0


def test_simulator_url_uses_the_sample_master_and_needs_no_credentials(settings_env):
    s = settings_env(DHAN_FEED_URL="ws://127.0.0.1:8765")
    assert s.instruments_csv == str(SAMPLE_INSTRUMENTS_CSV)
    s.require_credentials()  # no error


def test_live_feed_without_credentials_says_how_to_fix(settings_env):
    with pytest.raises(ConfigError, match="DHAN_CLIENT_ID and DHAN_ACCESS_TOKEN.*env.example"):
        settings_env().require_credentials()


@pytest.mark.parametrize("name,value,expected", [
    ("REDIS_URL", "localhost:6379", "REDIS_URL.*redis://"),
    ("REDIS_URL", "redis://127.0.0.1:notaport/0", "REDIS_URL.*port"),
    ("DHAN_DB_PORT", "three", "DHAN_DB_PORT='three' is not a whole number"),
    ("DHAN_DB_PORT", "70000", "DHAN_DB_PORT=70000 is out of range"),
    ("DHAN_FEED_STALL_TIMEOUT", "soon", "DHAN_FEED_STALL_TIMEOUT"),
    ("DHAN_FEED_STALL_TIMEOUT", "0", "at least 1"),
    # nan and inf parse as floats and would switch the stall watchdog off
    ("DHAN_FEED_STALL_TIMEOUT", "nan", "DHAN_FEED_STALL_TIMEOUT='nan' is not a finite number.*at least 1"),
    ("DHAN_FEED_STALL_TIMEOUT", "inf", "DHAN_FEED_STALL_TIMEOUT='inf' is not a finite number"),
    ("DHAN_FEED_STALL_TIMEOUT", "-Infinity", "not a finite number"),
    ("DHAN_FEED_STALL_TIMEOUT", "1e400", "not a finite number"),
    # a URL with the right scheme but no host
    ("DHAN_FEED_URL", "ws://", "DHAN_FEED_URL='ws://' has no host: write ws://HOST"),
    ("DHAN_FEED_URL", "ws:///x", "DHAN_FEED_URL='ws:///x' has no host"),
    ("DHAN_DEPTH_FEED_URL", "wss://:443", "DHAN_DEPTH_FEED_URL.*has no host"),
    ("REDIS_URL", "redis://", "REDIS_URL='redis://' has no host"),
    ("REDIS_URL", "unix://", "REDIS_URL.*names no file: write unix:///PATH"),
    ("DHAN_DB_URL", "mysql+pymysql://", "DHAN_DB_URL.*has no host"),
    ("DHAN_DB_URL", "sqlite://", "DHAN_DB_URL.*names no file"),
    ("DHAN_FEED_URL", "http://api-feed.dhan.co", "DHAN_FEED_URL.*ws://"),
    ("DHAN_DB_URL", "postgres://x/y", "DHAN_DB_URL"),
    ("DHAN_LOG_LEVEL", "LOUD", "DHAN_LOG_LEVEL"),
    ("DHAN_DEPTH_INSTRUMENTS", "NSE_FNO:1,XYZ:2", "DHAN_DEPTH_INSTRUMENTS.*XYZ:2"),
    ("DHAN_DEPTH_INSTRUMENTS", ",".join(f"NSE_FNO:{i}" for i in range(51)), "at most 50"),
])
def test_bad_values_name_the_variable(settings_env, name, value, expected):
    with pytest.raises(ConfigError, match=expected) as error:
        settings_env(**{name: value})
    scheme = value.partition("://")[0]
    if "://" in value and scheme in ("ws", "wss", "redis", "unix", "sqlite", "mysql+pymysql"):
        assert "must start with" not in str(error.value)  # it does start with it: say what is wrong


def test_urls_and_paths_that_are_fine(settings_env):
    s = settings_env(DHAN_FEED_URL="ws://127.0.0.1:8765", REDIS_URL="unix:///tmp/redis.sock",
                     DHAN_DB_URL="sqlite:////tmp/x.sqlite3", DHAN_FEED_STALL_TIMEOUT="2.5")
    assert (s.feed_url, s.redis_url, s.feed_stall_timeout) == ("ws://127.0.0.1:8765", "unix:///tmp/redis.sock", 2.5)


def test_data_dir_is_fixed_to_the_project_folder(tmp_path):
    assert load_settings(environ={}, dotenv_path=None).data_dir == PROJECT_ROOT / "var"
    assert load_settings(environ={"DHAN_DATA_DIR": "data/x"}, dotenv_path=None).data_dir == PROJECT_ROOT / "data" / "x"
    assert load_settings(environ={"DHAN_DATA_DIR": str(tmp_path)}, dotenv_path=None).data_dir == tmp_path
    assert (PROJECT_ROOT / "dhan_trading" / "config.py").is_file()


@pytest.mark.integration
def test_a_program_started_elsewhere_uses_the_project_env_and_data_dir(tmp_path):
    """A copy of the package in a project folder of its own, with its own .env; the program runs
    from another directory (which has a .env of its own that must be ignored)."""
    root, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    shutil.copytree(PROJECT_ROOT / "dhan_trading", root / "dhan_trading",
                    ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("DHAN_DB_NAME=from_cwd\nDHAN_DATA_DIR=/cwd/data\n")
    code = ("import json; from dhan_trading.config import load_settings; s = load_settings(); "
            "print(json.dumps([str(s.data_dir), s.db_name, s.database_url()]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHAN_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(root)

    def run() -> list:
        out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return json.loads(out)

    (root / ".env").write_text("DHAN_DB_NAME=from_root\n")
    data_dir, name, url = run()
    assert (data_dir, name) == (str(root / "var"), "from_root")
    assert url == f"sqlite:///{root / 'var' / 'from_root.sqlite3'}"
    (root / ".env").write_text("DHAN_DATA_DIR=store\n")  # relative: under the project folder, not the cwd
    assert run()[0] == str(root / "store")


def test_mysql_url_quotes_the_password_and_never_shows_it(settings_env):
    s = settings_env(DHAN_DB_HOST="db.local", DHAN_DB_USER="trader", DHAN_DB_PASSWORD="p@ss:w/rd#1")
    assert s.database_url() == "mysql+pymysql://trader:p%40ss%3Aw%2Frd%231@db.local:3306/dhan_trading?charset=utf8mb4"
    assert s.database_url("other").split("/")[-1].startswith("other")
    assert "p@ss" not in repr(s) and "p%40ss" not in repr(s)


def test_db_url_wins_and_plain_mysql_scheme_gets_pymysql(settings_env):
    s = settings_env(DHAN_DB_URL="mysql://root@127.0.0.1:3306/x", DHAN_DB_HOST="ignored")
    assert s.database_url() == "mysql+pymysql://root@127.0.0.1:3306/x"


def test_secrets_never_appear_in_repr_str_or_format(settings_env):
    s = settings_env(DHAN_ACCESS_TOKEN="eyJhbGciOiJIUzUxMiJ9.secret", DHAN_CLIENT_ID="1000000001")
    for text in (repr(s), str(s), f"{s.access_token}", str(s.access_token), repr(s.access_token)):
        assert "eyJhbGci" not in text
    assert s.access_token.reveal() == "eyJhbGciOiJIUzUxMiJ9.secret"
    assert repr(Secret("")) == "Secret('')"


def test_dotenv_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DHAN_DB_NAME=from_file\nDHAN_DB_PORT=3307\n")
    s = load_settings(environ={"DHAN_DB_PORT": "3308"}, dotenv_path=env_file)
    assert (s.db_name, s.db_port) == ("from_file", 3308)


def test_mask_url_hides_tokens_and_passwords():
    url = "wss://api-feed.dhan.co?version=2&token=abc.def.ghi&clientId=1000000001&authType=2"
    masked = mask_url(url)
    assert "abc.def" not in masked and "token=***" in masked and "clientId=1000000001" in masked
    assert mask_url("mysql+pymysql://u:hunter2@h/db") == "mysql+pymysql://u:***@h/db"
    assert mask_url(None) == ""


def test_log_files_mask_tokens_whatever_logged_them(settings_env, capsys):
    s = settings_env(DHAN_ACCESS_TOKEN="tok-SECRET-123", DHAN_CLIENT_ID="1")
    log = setup_logging("unit_test_service", settings=s)
    log.info("connecting to %s", "wss://x?token=tok-SECRET-123&clientId=1")
    logging.getLogger("other").warning("raw secret tok-SECRET-123 in text")
    for h in logging.getLogger().handlers:
        h.flush()
    text = (s.data_dir / "logs" / "unit_test_service.log").read_text() + capsys.readouterr().err
    assert "tok-SECRET-123" not in text
    assert text.count("***") >= 2
    assert MaskSecrets(("abcd",)).mask("x abcd y") == "x *** y"
    for h in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(h)
        h.close()


def test_env_example_documents_every_variable():
    from dhan_trading.config import VARIABLES
    text = (__import__("pathlib").Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert [name for name in VARIABLES if name not in text] == []


@pytest.mark.integration
def test_cli_without_a_command_prints_the_help(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "dhan_trading"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert out.returncode == 2  # no command is a usage error, for scripts; the help is for people
    assert "required" not in out.stderr and out.stderr == ""
    assert out.stdout.startswith("usage: python -m dhan_trading") and "commands:" in out.stdout
    assert "scheduler" in out.stdout and "demo" in out.stdout


def test_cli_help_lists_every_command_of_the_design():
    """DESIGN §3.1 says `--help` lists every command of its table: compare the help with that
    table (not with the help's own source table)."""
    import re
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    design = (root.parent / "shared" / "DESIGN.md").read_text()
    section = design[design.index("### 3.1"):design.index("### 3.2")]
    programs = set()
    for cell in re.findall(r"^\| `([^`]+)`", section, re.M):
        words = cell.replace("\\|", "|").split()
        if words[:3] == ["python", "-m", "dhan_trading"]:
            programs.add(words[3])                     # a subcommand: demo, services, redis ...
        elif words[1] == "-m":
            programs.add(words[2].split("<")[0])       # dhan_trading.visualizers. , ...services.monitor
        else:
            programs.add(words[1])                     # launch_fno_feed.py ...
    assert len(programs) >= 10
    out = subprocess.run([sys.executable, "-m", "dhan_trading", "--help"], capture_output=True, text=True,
                         check=True, cwd=root).stdout
    assert sorted(p for p in programs if p not in out) == []


@pytest.mark.parametrize("text, value", [("1.5", 1.5), ("-2", -2.0), ("1e3", 1000.0), ("0", 0.0)])
def test_finite_number_takes_numbers(text, value):
    from dhan_trading.config import finite_number
    assert finite_number(text) == value


@pytest.mark.parametrize("text, says", [("nan", "not a finite number"), ("inf", "not a finite number"),
                                        ("-Infinity", "not a finite number"), ("x", "not a number")])
def test_finite_number_refuses_nan_inf_and_words(text, says):
    import argparse

    from dhan_trading.config import finite_number
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        finite_number(text)


@pytest.mark.parametrize("module, call, argv", [
    ("dhan_trading.demo", "main", ["--duration", "nan"]),
    ("dhan_trading.market_feed.launcher", "parse_args", ["--cool-off", "inf"]),
    ("dhan_trading.subscribers.fno_db_writer", "parse_args", ["--lag-limit-s", "nan"]),
    ("dhan_trading.simulator.server", "main", ["--rate", "nan"]),
    ("dhan_trading.scheduler.market_scheduler", "main", ["--lead-minutes", "nan"]),
    ("dhan_trading.redis_service", "main", ["stop", "--timeout", "nan"]),
])
def test_number_options_refuse_nan_naming_the_option(module, call, argv, capsys):
    """--duration nan used to be taken: a demo that never stops, a feed that never cools off."""
    import importlib
    with pytest.raises(SystemExit) as info:
        getattr(importlib.import_module(module), call)(argv)
    assert info.value.code == 2
    assert f"argument {argv[-2]}: '{argv[-1]}' is not a finite number" in capsys.readouterr().err


def test_the_quote_board_refuses_a_nan_refresh_rate(capsys):
    from dhan_trading.visualizers.quote_visualizer import parser
    with pytest.raises(SystemExit):
        parser().parse_args(["--refresh", "nan"])
    assert "argument --refresh: 'nan' is not a finite number" in capsys.readouterr().err
