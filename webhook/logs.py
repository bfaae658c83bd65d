"""Logs as one JSON object per line, for log shippers (`kubectl logs | jq` works too).

Fields: time (UTC, ISO 8601), level, logger, message, any of the known `extra=` keys (the
review's uid, namespace, pod, operation, decision, durationMs; policy digests and problems on
reloads), and `exception` with the traceback text when there is one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Final

EXTRA_FIELDS: Final = (
    "uid",
    "namespace",
    "pod",
    "operation",
    "decision",
    "durationMs",
    "policy",
    "problems",
    "event",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in EXTRA_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for our loggers and gunicorn's, all through JsonFormatter on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # Each review is logged by routes.py with its fields; access lines would repeat it.
            "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},
        },
    }


def configure(level: str = "info") -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level))
