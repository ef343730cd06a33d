"""Sizes and durations as people write them in configuration and policy files: `256MB`, `1.5GB`, `30s`, `2m`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|PB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


def parse_duration(value: object) -> float | None:
    """'500ms', '30s', '2m', '1h', '1d' or a number of seconds -> seconds (> 0); None if not a duration."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        return None
    return seconds if seconds > 0 else None


def parse_size(value: object) -> int | None:
    """'10GB', '512MB', '1.5TB' (powers of 1024) or a number of bytes -> bytes (> 0); None if not a size."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    else:
        return None
    return size if size > 0 else None
