"""Files shipped inside the package: the example policies and dev users of the embedded demo, so `gateway
serve` runs from any directory (and `gateway init DIR` copies them out for editing)."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_POLICIES = Path(__file__).resolve().parent / "policies"
