"""How ``python -m uringio`` logs: plain lines (``--log-level``), one JSON
object per line (``--log-json``), or what a logging configuration file
says (``--log-config``: dictConfig from JSON or YAML, fileConfig from
anything else, as uvicorn reads it)."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time

PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"


class LogConfigError(ValueError):
    """A --log-config file that cannot be read or applied."""


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time (UTC, ISO 8601), level, logger,
    message, the exception's traceback if any, and an access log line's
    fields (client, method, path, query, status, duration_ms, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        access = getattr(record, "access", None)
        if access is not None:
            line.update(access)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, config_file: str | None = None, json_lines: bool = False) -> None:
    """Set up logging for a command; raises LogConfigError."""
    if config_file is None:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
        logging.basicConfig(level=level, handlers=[handler])
        return
    try:
        if config_file.endswith(".json"):
            with open(config_file, encoding="utf-8") as f:
                logging.config.dictConfig(json.load(f))
        elif config_file.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise LogConfigError(f"--log-config {config_file}: a YAML file needs PyYAML "
                                     "(pip install pyyaml)") from None
            with open(config_file, encoding="utf-8") as f:
                logging.config.dictConfig(yaml.safe_load(f))
        else:
            if not os.path.exists(config_file):
                raise FileNotFoundError(config_file)
            logging.config.fileConfig(config_file, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise LogConfigError(f"--log-config {config_file}: {exc}") from None
