"""JSON-lines logging to stderr, every string field redacted, as the Rust processors log:
`{"ts":…,"level":…,"target":…,"event":…,…}`. Stdout is never written."""

from __future__ import annotations

import logging
import sys
import threading
from datetime import datetime, timezone
from typing import Any

from ._json import dumps
from ._redact import Redactor

_lock = threading.Lock()
_redactor = Redactor()


def add_secret_values(redactor: Redactor) -> None:
    """From now on, log lines mask what `redactor` masks too."""
    global _redactor
    with _lock:
        _redactor = _redactor.merged(redactor)


def log(level: str, event: str, **fields: Any) -> None:
    """Writes one line: the time, `level`, the target `proctor_sdk`, `event`, then
    `fields`; strings (and anything else not a number or a bool) redacted."""
    redactor = _redactor
    line: dict[str, Any] = {
        "ts": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "level": level,
        "target": "proctor_sdk",
        "event": event,
    }
    for name, value in fields.items():
        if isinstance(value, (bool, int, float)):
            line[name] = value
        else:
            line[name] = redactor.redact(value if isinstance(value, str) else repr(value))
    text = dumps(line) + "\n"
    with _lock:
        sys.stderr.write(text)
        sys.stderr.flush()


class JsonLinesHandler(logging.Handler):
    """Sends the records of other libraries' loggers (the HTTP server's) through `log`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            log(record.levelname.lower(), "server.log", logger=record.name, msg=message)
        except Exception:  # noqa: BLE001 - a log line must never stop the server
            self.handleError(record)
