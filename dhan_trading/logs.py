"""Logging for every service: a rotated file under DHAN_DATA_DIR/logs plus stderr, secrets masked."""
from __future__ import annotations

import logging
import logging.handlers
import re

from .config import Settings, get_settings

_TOKEN_RE = re.compile(r"((?:token|access_token|password|secret)=)[^&\s'\"]+", re.I)


class MaskSecrets(logging.Filter):
    """Rewrites token=... and password-in-URL fragments in every record, whatever logged them."""

    def __init__(self, secrets: tuple[str, ...] = ()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def mask(self, text: str) -> str:
        text = _TOKEN_RE.sub(r"\1***", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(service: str, settings: Settings | None = None, console: bool = True) -> logging.Logger:
    """Configure the root logger for one service process; returns the service's logger."""
    settings = settings or get_settings()
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for h in list(root.handlers):
        root.removeHandler(h)
    mask = MaskSecrets((settings.access_token.reveal(), settings.db_password.reveal()))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = []
    # Under the supervisor, stderr already goes to the rotated DATA_DIR/logs/<id>.log, written
    # by the service's runner alone: a second handler on that file would double every line.
    supervised = settings.supervised
    if not supervised:
        handlers.append(logging.handlers.RotatingFileHandler(
            log_dir / f"{service}.log", maxBytes=10_000_000, backupCount=5, encoding="utf-8"))
    if console or supervised:
        handlers.append(logging.StreamHandler())
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(mask)
        root.addHandler(h)
    return logging.getLogger(service)
