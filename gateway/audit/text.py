"""Any text the gateway can receive, in a form every audit store accepts, reversibly.

PostgreSQL refuses NUL in `text` (and `\\u0000` in jsonb); no store can encode a lone surrogate (what a
`U&'\\D800'` escape or undecodable bytes become) as UTF-8. A record is therefore made storable before it is
sealed into its chain, so the hash covers exactly the text the store keeps and `gateway audit verify` holds
on every store:

    text without NUL or surrogates, not starting with ESCAPED   stored as is (nearly every value)
    anything else                                               ESCAPED + the text with `\\` -> `\\\\`,
                                                                NUL -> `\\0`, a surrogate -> `\\uDXXX`

`original(storable(t)) == t` for every string `t`.
"""

from __future__ import annotations

import re
from typing import Any

ESCAPED = "\u241b"  # SYMBOL FOR ESCAPE: marks a stored value that was escaped
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPE = re.compile("[\\\\\x00\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(?:(\\)|(0)|u([0-9A-F]{4}))")


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    if char == "\x00":
        return "\\0"
    return f"\\u{ord(char):04X}"


def _unescape_one(match: re.Match[str]) -> str:
    if match.group(1):
        return "\\"
    if match.group(2):
        return "\x00"
    return chr(int(match.group(3), 16))


def storable_text(text: str) -> str:
    if text.isascii():  # nearly every value: no surrogate, no ESCAPED; only a NUL to look for
        if "\x00" not in text:
            return text
    elif not text.startswith(ESCAPED) and _UNSTORABLE.search(text) is None:
        return text
    return ESCAPED + _ESCAPE.sub(_escape_one, text)


def original_text(text: str) -> str:
    """The text as received, from its stored form."""
    if not text.startswith(ESCAPED):
        return text
    return _UNESCAPE.sub(_unescape_one, text[len(ESCAPED):])


_PLAIN = frozenset({int, float, bool, type(None)})


def storable(value: Any) -> Any:
    """`value` with every string in it (list items, dict keys and values too) made storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, (list, tuple)):
        # every ledger row passes here: its plain items are taken without a call each
        items = [storable_text(v) if type(v) is str else v if type(v) in _PLAIN else storable(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value
