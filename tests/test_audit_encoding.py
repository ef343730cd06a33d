"""The fast encoders write exactly what the reference encoders write: the canonical form every stored hash was
computed over (chain.py), and the values of a log line (logs.py). Property tests over any value."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.chain import Chain, _reference, canonical
from gateway.audit.record import FIELDS, AuditRecord
from gateway.audit.text import ESCAPED
from gateway.logs import _text_value

# any text, including what no store keeps (NUL, lone surrogates), control characters, DEL, the escape mark
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", "\x00", "\ud800", "\x7f", "\u2028", ESCAPED, f"{ESCAPED}x", "\\u0000", '"', "\\", "é", "\U0001f600"])
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-05, 6.657289300027249e-06, 1e16, 1e-7, 0.1, -0.0, 5e-324, 1.7976931348623157e308, 123.456])
ints = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**63, 2**64, -(2**63) - 1])
scalars = st.none() | st.booleans() | ints | floats | texts
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(texts, inner, max_size=4), max_leaves=12)


def reference_or_error(data: dict[str, Any]) -> bytes | type[Exception]:
    try:
        return _reference(data)
    except (ValueError, UnicodeEncodeError) as error:
        return type(error)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(texts, values, max_size=8))
def test_canonical_is_the_reference_encoding_of_any_dict(data: dict[str, Any]) -> None:
    expected = reference_or_error(data)
    try:
        assert canonical(data) == expected
    except (ValueError, UnicodeEncodeError) as error:
        assert type(error) is expected


def _field(kind: str) -> st.SearchStrategy[Any]:
    listed = st.lists(texts, max_size=3)
    return {"text": st.none() | texts, "int": st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
            "float": st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5),
            "bool": st.booleans(), "time": st.just("2026-01-31T12:00:00.000000Z"),
            "json": listed}[kind]


def _records() -> st.SearchStrategy[AuditRecord]:
    skip = {"stream", "sequence_number", "prev_hash", "record_hash", "columns_read"}
    fields = {name: _field(kind) for name, kind in FIELDS if name not in skip}
    fields["event_id"] = texts.filter(bool)
    fields["frontend"] = texts
    fields["decision"] = texts
    fields["columns_read"] = st.dictionaries(texts, st.lists(texts, max_size=3), max_size=3)
    return st.fixed_dictionaries(fields).map(lambda values: AuditRecord(**values))


@settings(max_examples=60, deadline=None)
@given(st.lists(_records(), min_size=1, max_size=4))
def test_a_sealed_record_hashes_its_reference_encoding_and_the_journal_line_is_it(
        records: list[AuditRecord]) -> None:
    """With `storable`, exactly what `make_storable` then the reference encoder give: escaped where needed
    (NUL, surrogates, the escape mark in front), untouched otherwise."""
    chain, previous = Chain("s"), "0" * 64
    for record in records:
        escaped = copy.deepcopy(record)
        escaped.make_storable()
        line = chain.seal(record, storable=True)
        assert record.to_dict() == {**escaped.to_dict(), "stream": "s", "sequence_number": record.sequence_number,
                                    "prev_hash": previous, "record_hash": record.record_hash}
        assert record.record_hash == hashlib.sha256(_reference(record.to_dict())).hexdigest()
        assert line.encode() == _reference(record.to_dict())[:-1] + f',"record_hash":"{record.record_hash}"}}'.encode()
        previous = record.record_hash


@settings(max_examples=150, deadline=None)
@given(values)
def test_a_text_log_value_is_its_ascii_json(value: Any) -> None:
    """Whatever the value (the client's SQL, source, tags), exactly what the JSON encoder writes: ASCII only,
    quotes, backslashes, control characters and DEL escaped, so one line stays one line."""
    try:
        expected = json.dumps(value, default=str)
    except ValueError:
        return
    assert _text_value(value) == expected
