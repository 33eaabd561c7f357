"""Log lines as JSON objects (``[log] format = "json"``): one object per line, for a log collector.

Fields: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``, and ``exception`` (the formatted
traceback) when there is one. A message is formatted with its arguments first, so it reads as in the text format.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
