"""CSV/JSON export of votes with the model identities unblinded (`chosen_model`)."""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any, TextIO

from .records import VoteRecord

FORMATS = ("csv", "json")
_SERVER_TIMES = ("server_ms", "shown_at", "received_at")  # next to the client's response_ms
_FIELDS = [f.name for f in fields(VoteRecord) if f.name not in _SERVER_TIMES]
_AFTER_ANSWER = _FIELDS.index("answer") + 1
_AFTER_RESPONSE = _FIELDS.index("response_ms") + 1
EXPORT_COLUMNS = (*_FIELDS[:_AFTER_ANSWER], "chosen_model", *_FIELDS[_AFTER_ANSWER:_AFTER_RESPONSE], *_SERVER_TIMES,
                  *_FIELDS[_AFTER_RESPONSE:])
_TIMES = ("created_at", "shown_at", "received_at")


def vote_rows(votes: Sequence[VoteRecord]) -> list[dict[str, Any]]:
    """One dict per vote, keys in EXPORT_COLUMNS order, timestamps as ISO 8601 strings."""
    rows = []
    for vote in votes:
        values = asdict(vote) | {"chosen_model": vote.chosen_model}
        values |= {name: None if values[name] is None else values[name].isoformat() for name in _TIMES}
        rows.append({column: values[column] for column in EXPORT_COLUMNS})
    return rows


def write_votes(votes: Sequence[VoteRecord], out: TextIO, fmt: str) -> int:
    """Write `votes` to `out` as "csv" (header row; empty cells for missing values) or "json"
    (a list of objects). Returns the number of votes written."""
    rows = vote_rows(votes)
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    else:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    return len(rows)
