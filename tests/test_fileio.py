"""Atomic writes: all or nothing, and the file's mode as a normal write would leave it."""
import stat

import pytest

from cbam_viz.fileio import atomic_write, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_atomic_write_replaces_the_file_whole_and_keeps_a_readable_mode(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write(path, lambda f: f.write(b"one"))
    assert path.read_bytes() == b"one" and _mode(path) == 0o644  # not mkstemp's 0600
    path.chmod(0o664)
    atomic_write(path, lambda f: f.write(b"two"))
    assert path.read_bytes() == b"two" and _mode(path) == 0o664  # the replaced file's mode is kept


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_an_atomic_text_write_is_utf8_with_newlines_as_written(tmp_path):
    import csv

    path = tmp_path / "table.csv"
    atomic_write_text(path, lambda f: csv.writer(f).writerows([("image", "reason"), ("ü.png", "not an image")]))
    assert path.read_bytes() == "image,reason\r\nü.png,not an image\r\n".encode()  # csv's own line ends, untranslated
    atomic_write_text(path, "# Tabelle\n")
    assert path.read_bytes() == "# Tabelle\n".encode() and _mode(path) == 0o644
