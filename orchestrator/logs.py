"""Log output that never carries a secret or a terminal escape, whichever logger wrote it.

The filter applies the one specification of what is secret (`orchestrator.sensitive`) to the
message and to the formatted traceback, so a chained exception's message is scrubbed as well.
The CLI installs it on the handlers it configures; a host application can add it to its own.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final

from orchestrator.sensitive import redact_text

__all__ = ["RedactingFilter", "configure_cli_logging", "printable"]

CLI_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# C0 controls but tab and line feed, DEL, C1 controls, and the bidirectional overrides that can
# make a terminal show text other than what it holds.
_OTHERS: Final = "\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
_CONTROL_RE: Final = re.compile(f"[\\x00-\\x08\\x0b-\\x1f{_OTHERS}]")
_CONTROL_OR_BREAK_RE: Final = re.compile(f"[\\x00-\\x1f{_OTHERS}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = True) -> str:
    """`text` with control characters (ANSI/OSC escape sequences start with one) shown as
    `\\x1b`-style escapes instead of being sent to the terminal; `newlines=False` escapes line
    breaks and tabs too (for one-line cells)."""
    return (_CONTROL_RE if newlines else _CONTROL_OR_BREAK_RE).sub(_escape, text)


class RedactingFilter(logging.Filter):
    """Scrubs every record it sees, traceback and stack included, and escapes control
    characters; attach it to a handler (it then sees every logger's records) or a logger.

    A traceback is formatted here, scrubbed and cached on the record (`exc_text`), where every
    formatter takes it from: a chained exception's message cannot reach the output unscrubbed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is not ours to fix; leave the record alone
            return True
        scrubbed = printable(redact_text(message))
        if scrubbed != message:
            record.msg = scrubbed
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = printable(redact_text(record.exc_text))
        if record.stack_info:
            record.stack_info = printable(redact_text(record.stack_info))
        return True


_TRACEBACKS: Final = logging.Formatter()


def configure_cli_logging(debug: bool) -> None:
    """The CLI's logging: WARNING (DEBUG with --debug) to stderr, and every root handler (the
    CLI's own and any configured before it) scrubbing what it writes."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format=CLI_FORMAT, stream=sys.stderr
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not debug:
        # psycopg_pool warns on every reconnection attempt while the database is down; the
        # command reports the outage in its own line (and recovery in its own retry log).
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
