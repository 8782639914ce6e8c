"""Reading small user files: bounded, never blocking, one line per failure."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import profiles.loader
from profiles.files import InputFileError, read_text_file
from profiles.loader import ProfileError, load_file

LIMIT_BYTES = 1024


def read(path: str | Path, max_bytes: int = LIMIT_BYTES) -> str:
    return read_text_file(path, max_bytes=max_bytes, what="a test file")


def refused(path: str | Path, max_bytes: int = LIMIT_BYTES) -> str:
    """The one-line message read() fails with."""
    with pytest.raises(InputFileError) as caught:
        read(path, max_bytes)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_small_text_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text("name = 'ü'\n", encoding="utf-8")
    assert read(path) == "name = 'ü'\n"


@pytest.mark.timeout(5)
def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    started = time.monotonic()
    message = refused(fifo)
    assert time.monotonic() - started < 1.0
    assert message.startswith(f"{fifo}: not a regular file")


@pytest.mark.timeout(5)
def test_dev_zero_is_refused_quickly() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this platform")
    started = time.monotonic()
    assert "not a regular file" in refused("/dev/zero")
    assert time.monotonic() - started < 1.0


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert refused(tmp_path).startswith(f"{tmp_path}: not a regular file")


def test_a_missing_file_names_the_file_and_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert refused(path) == f"{path}: cannot open: No such file or directory"


def test_a_file_name_with_a_newline_still_gives_one_line(tmp_path: Path) -> None:
    refused(tmp_path / "two\nlines.toml")  # refused() asserts a single line


def test_a_file_one_byte_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(b"#" * LIMIT_BYTES)
    assert len(read(path)) == LIMIT_BYTES  # exactly at the limit is fine
    path.write_bytes(b"#" * (LIMIT_BYTES + 1))
    message = refused(path)
    assert "1,025 bytes" in message
    assert "a test file is at most 1,024" in message


def test_a_file_that_reports_size_zero_is_still_bounded() -> None:
    status = Path("/proc/self/status")  # st_size 0, content ~1 KB
    if not status.exists():
        pytest.skip("no /proc on this platform")
    assert "a test file is at most 16" in refused(status, max_bytes=16)


def test_non_utf8_bytes_name_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"abc\xff\xfe")
    assert refused(path) == f"{path}: not UTF-8 text (byte 3)"


@pytest.mark.skipif(
    os.geteuid() == 0, reason="running as root: root can read a chmod 000 file, nothing to refuse"
)
def test_an_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text("a = 1\n")
    path.chmod(0)
    try:
        assert refused(path) == f"{path}: cannot open: Permission denied"
    finally:
        path.chmod(0o600)


# The loader goes through the same reader and keeps its `name.toml: problem` lines.


@pytest.mark.timeout(5)
def test_loader_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(ProfileError, match=r"^pipe\.toml: not a regular file"):
        load_file(fifo)


def test_loader_bounds_files_that_report_size_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc on this platform")
    monkeypatch.setattr(profiles.loader, "MAX_PROFILE_BYTES", 16)
    with pytest.raises(ProfileError, match=r"^status: .*a profile is at most 16$"):
        load_file(status)


def test_loader_reports_a_missing_file_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load_file(tmp_path / "nope.toml")
    assert str(caught.value) == "nope.toml: cannot open: No such file or directory"
