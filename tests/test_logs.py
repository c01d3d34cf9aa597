"""Log lines keep an error's traceback, as text, and never its local variables."""

import json
import logging
import sys

from kaizen_site import logs


def formatted(*, json_lines: bool) -> str:
    config = logs.configure(json=json_lines, level="INFO")["formatters"]["structured"]
    formatter = config["()"](processors=config["processors"], foreign_pre_chain=config["foreign_pre_chain"])

    def fails(api_key="sk-secret-value"):
        raise ZeroDivisionError("division by zero")

    try:
        fails()
    except ZeroDivisionError:
        record = logging.LogRecord("kaizen.test", logging.ERROR, __file__, 1, "fix failed", None, sys.exc_info())
    return formatter.format(record)


def test_a_json_line_carries_the_traceback_as_text():
    line = json.loads(formatted(json_lines=True))
    assert line["event"] == "fix failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "in fails" in line["exception"] and "ZeroDivisionError: division by zero" in line["exception"]
    assert "exc_info" not in line
    assert "sk-secret-value" not in json.dumps(line)


def test_a_console_line_prints_the_traceback_without_locals():
    text = formatted(json_lines=False)
    assert "fix failed" in text and "ZeroDivisionError: division by zero" in text
    assert "sk-secret-value" not in text
