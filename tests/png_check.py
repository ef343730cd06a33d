"""A PNG decoder small enough to read here (stdlib zlib), for checking that a screenshot is not blank.

Decodes 8-bit grayscale, RGB and RGBA, non-interlaced (what Chromium writes), undoing the five row filters
of the PNG specification (ISO/IEC 15948, section 9).
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 6: 4}  # color type -> samples per pixel


def decode(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows of raw samples)."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    position, idat, header = len(SIGNATURE), bytearray(), None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunk = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, color, _compression, _filter, interlace = header
    if depth != 8 or color not in CHANNELS or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, color type {color}, interlace {interlace})")
    channels = CHANNELS[color]
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = rows[-1]
    return width, height, channels, rows


def _unfilter(kind: int, line: bytearray, previous: bytes, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:  # Up, nearly every row Chromium writes: bytewise addition on whole rows (SWAR on big ints)
        size = len(line)
        low, high = int.from_bytes(b"\x7f" * size), int.from_bytes(b"\x80" * size)
        a, b = int.from_bytes(line), int.from_bytes(previous)
        line[:] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(size)
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 3:
            line[i] = (line[i] + ((left + previous[i]) >> 1)) & 255
        elif kind == 4:
            up, up_left = previous[i], previous[i - bpp] if i >= bpp else 0
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        else:
            raise ValueError(f"unknown PNG filter type {kind}")


def colour_profile(data: bytes) -> tuple[int, float]:
    """(number of distinct colours, share of the most common colour) of a PNG's pixels (every other row and
    column: a page's text and rules are wider than one pixel)."""
    _width, _height, channels, rows = decode(data)
    counts: Counter[tuple[int, ...]] = Counter()
    for row, times in Counter(rows[::2]).items():  # screenshots repeat rows (margins, blank space): count each once
        for colour, n in Counter(zip(*(row[c::channels * 2] for c in range(channels)), strict=True)).items():
            counts[colour] += n * times
    return len(counts), counts.most_common(1)[0][1] / counts.total()


def is_blank(data: bytes) -> bool:
    """One colour, or nearly so (a page that rendered nothing but its background)."""
    distinct, dominant = colour_profile(data)
    return distinct < 16 or dominant > 0.99
