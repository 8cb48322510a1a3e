"""Make text from the broker safe to show a human: one escaping rule for every human-facing output.

Queue names, worker names and task fields come from any client of the broker. Printed raw, an
escape sequence (ESC, OSC) can rewrite a terminal, a newline can forge an extra line of `--human`
or `--check`, a NUL can cut a log, and a lone surrogate cannot even be encoded. `printable`
shows every such character as a visible escape (`\\x1b`, `\\n`, `\\u202e`), so what the user reads
is what the broker holds, inert. Destinations add their own markup escaping on top (Slack).
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, bidi overrides/isolates and line/paragraph separators, zero-width joiners
# that hide text, and lone surrogates (bytes that were not UTF-8, decoded with surrogateescape).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the raw byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: Any) -> str:
    """`text` as a string with every control, bidi or invalid character shown as an escape."""
    return _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))


def one_line(text: Any) -> str:
    """`printable`, with runs of whitespace collapsed: for outputs that must stay one line."""
    return " ".join(printable(text).split())
