"""Writing files so that no reader ever sees part of one; the formats figures are written in."""
from __future__ import annotations

import csv
import io
import os
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """``write`` into a temporary file beside ``path``, then rename it into place: readers never see part of it.
    The file keeps the mode of the one it replaces (a new one gets 0644, not the temporary file's 0600)."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, write: Callable[[IO[str]], Any] | str) -> Path:
    """:func:`atomic_write` for text in UTF-8: ``write`` is the text, or writes it to a text stream (newlines
    untranslated, as the csv module expects)."""
    def binary(f: IO[bytes]) -> None:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        if callable(write):
            write(text)
        else:
            text.write(write)
        text.flush()
        text.detach()  # atomic_write closes the file itself

    return atomic_write(path, binary)


def atomic_write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV with a header (``fieldnames``, default the first row's keys), written atomically."""
    def write(f: IO[str]) -> None:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames or rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    return atomic_write_text(path, write)


FIGURE_FORMATS = ("pdf", "svg", "png")


def figure_format(path: str | Path) -> str:
    """"pdf", "svg" or "png", from the file name; a ValueError naming the file otherwise (checked before
    anything is computed: this module imports nothing heavy)."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"{Path(path).name}: the figure is written as .pdf, .svg or .png, not {Path(path).suffix or 'no suffix'!r}")
    return fmt
