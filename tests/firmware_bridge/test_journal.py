"""The journal and the outbox on disk: private, durable, honest on a full disk, readable back."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from firmware_bridge import journal
from firmware_bridge.cli.commands import journal_history
from firmware_bridge.device import StopReason
from firmware_bridge.journal import Journal, history
from firmware_bridge.record import Event, Sample, SessionRecord
from firmware_bridge.telemetry.outbox import Outbox
from tests.disks import (
    SmallDisk,
    mode,
    spy_fsync,
    synced_sizes,
    warnings_about,
)


def sample(t: float) -> Sample:
    return Sample(
        elapsed_s=t,
        remaining_s=60 - t,
        segment="ramp",
        intensity=0.4,
        applied=0.4,
        zones=(0.4, 0.4),
        nrs=3,
        battery=80,
        temperature_c=30.5,
    )


def record(stop: StopReason | None = StopReason.COMPLETED, ratings: int = 2) -> SessionRecord:
    return SessionRecord(
        profile="test",
        cap=4,
        stop_reason=stop,
        duration_s=60.0,
        max_intensity=0.4,
        ratings=[(float(i), 3) for i in range(ratings)],
    )


def run_session(log: Journal, seconds: int = 30, *, stop: StopReason | None = None) -> None:
    log.event(Event("session_started", 0.0, {"failsafe": "watchdog"}))
    for t in range(seconds):
        log.sample(sample(float(t)))
        if t % 10 == 0:
            log.event(Event("rating", float(t), {"nrs": 3}))
    log.close(record(stop or StopReason.COMPLETED))


def rows(capsys: pytest.CaptureFixture[str], *, as_json: bool = False) -> list[str]:
    assert journal_history(argparse.Namespace(json=as_json, last=20)) == 0
    return capsys.readouterr().out.splitlines()


# --- privacy ----------------------------------------------------------------------------------


def test_journal_files_and_directories_are_user_only(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "new" / "data"
    log = Journal("test", directory=root, header={})
    run_session(log, 3)
    assert [mode(p) for p in (tmp_path / "new", root, root / "sessions")] == [0o700] * 3
    assert mode(log.path) == 0o600


def test_an_existing_sessions_directory_is_tightened(tmp_path: Path, umask: int) -> None:
    (tmp_path / "sessions").mkdir()
    (tmp_path / "sessions").chmod(0o755)  # made by an older version
    run_session(Journal("test", directory=tmp_path, header={}), 3)
    assert mode(tmp_path / "sessions") == 0o700


def test_the_platform_data_dir_is_tightened_a_chosen_one_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, chosen = tmp_path / "platform", tmp_path / "chosen"
    for folder in (platform, chosen):
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
    monkeypatch.setattr(journal, "user_data_dir", lambda *_a, **_k: str(platform))
    monkeypatch.delenv(journal.ENV_DATA_DIR)
    run_session(Journal("test", header={}), 1)
    monkeypatch.setenv(journal.ENV_DATA_DIR, str(chosen))
    run_session(Journal("test", header={}), 1)
    assert (mode(platform), mode(chosen)) == (0o700, 0o755)
    assert (mode(platform / "sessions"), mode(chosen / "sessions")) == (0o700, 0o700)


def test_outbox_files_and_directories_are_user_only(tmp_path: Path, umask: int) -> None:
    older = tmp_path / "outbox" / "older"
    older.mkdir(parents=True)
    older.chmod(0o755)
    (older / "outbox.jsonl").write_text('{"type":"e"}\n')
    (older / "outbox.jsonl").chmod(0o644)
    kept = Outbox(older)
    assert (mode(older), mode(older / "outbox.jsonl")) == (0o700, 0o600)
    assert kept.peek() == {"type": "e"}

    box = Outbox(tmp_path / "outbox" / "dev")
    box.append({"type": "e", "n": 1})
    box.append({"type": "e", "n": 2})
    box.pop()  # writes the cursor
    box.flush()
    folder = tmp_path / "outbox" / "dev"
    assert mode(folder) == 0o700
    assert {p.name: mode(p) for p in folder.iterdir()} == {
        "outbox.jsonl": 0o600,
        "outbox.cursor": 0o600,
    }


# --- durability (S10) ----------------------------------------------------------------------


def test_journal_events_are_fsynced_before_flush_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = spy_fsync(monkeypatch)
    log = Journal("test", directory=tmp_path, header={})
    log.sample(sample(0.0))
    log.event(Event("session_started", 0.0, {}))
    assert log.flush()
    size = log.path.stat().st_size
    assert size in synced_sizes(synced, log.path)  # the event's line is on the disk
    log.close(record())


def test_the_summary_survives_a_full_disk(
    disk: SmallDisk, caplog: pytest.LogCaptureFixture
) -> None:
    log = Journal("test", directory=disk.path, header={"device_id": "x"})
    assert log.flush()
    disk.fill()
    run_session(log, 600)  # the session runs on; its lines are counted, not raised
    assert log.status == "degraded"
    assert log.lines_lost > 0
    assert len(warnings_about(caplog, log.path)) == 1
    (past,) = history(disk.path)
    assert past["stop_reason"] == "completed"  # not "interrupted"
    assert past["closed"] is True
    assert past["journal"] == "degraded"
    assert past["journal_lines_lost"] == log.lines_lost
    assert past["device_id"] == "x"


def test_a_read_only_directory_turns_the_journal_off_with_one_warning(
    read_only_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = Journal("test", directory=read_only_dir, header={})
    run_session(log, 20)
    assert log.status == "off"
    assert log.lines_lost > 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert history(read_only_dir) == []


def test_a_healthy_journal_says_ok_and_keeps_the_summary_at_both_ends(tmp_path: Path) -> None:
    log = Journal("test", directory=tmp_path, header={})
    run_session(log, 5)
    assert (log.status, log.lines_lost) == ("ok", 0)
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [lines[0]["kind"], lines[1]["kind"], lines[-1]["kind"]] == [
        "header",
        "summary",
        "summary",
    ]
    assert "journal" not in lines[1]


def test_a_summary_too_big_for_its_slot_is_appended(tmp_path: Path) -> None:
    log = Journal("test", directory=tmp_path, header={})
    log.close(record(ratings=2000))  # ~40 KB of ratings
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["header", "slot", "summary"]
    (past,) = history(tmp_path)
    assert len(past["ratings"]) == 2000


# --- reading it back ------------------------------------------------------------------------


def test_a_crashed_session_reads_as_interrupted_and_its_slot_as_nothing(tmp_path: Path) -> None:
    log = Journal("test", directory=tmp_path, header={})
    for t in range(5):
        log.sample(sample(float(t)))
    assert log.flush()  # ... and then the process dies
    (past,) = history(tmp_path)
    assert past["stop_reason"] is None
    assert past["closed"] is False
    assert (past["samples"], past["duration_s"], past["skipped_lines"]) == (5, 4.0, 0)


def test_samples_after_the_slot_do_not_change_the_summary(tmp_path: Path) -> None:
    run_session(Journal("test", directory=tmp_path, header={}), 30)
    (past,) = history(tmp_path)
    assert (past["samples"], past["duration_s"]) == (0, 60.0)  # what the record said


def test_history_skips_binary_garbage_and_keeps_the_other_sessions(tmp_path: Path) -> None:
    run_session(Journal("test", directory=tmp_path, header={}), 3)
    sessions = tmp_path / "sessions"
    (sessions / "00-garbage.jsonl").write_bytes(bytes(range(256)) * 40)
    (sessions / "01-mixed.jsonl").write_bytes(
        b'{"kind":"header","profile":"p"}\n\xff\xfe\n[1,2]\n' + b"[" * 100_000 + b"\n"
    )
    found = {entry["file"]: entry for entry in history(tmp_path)}
    assert len(found) == 3
    assert found["01-mixed.jsonl"]["profile"] == "p"
    assert found["01-mixed.jsonl"]["skipped_lines"] == 3
    assert found["00-garbage.jsonl"]["skipped_lines"] > 0


@pytest.mark.timeout(10)
def test_history_does_not_open_a_fifo(tmp_path: Path) -> None:
    run_session(Journal("test", directory=tmp_path, header={}), 3)
    os.mkfifo(tmp_path / "sessions" / "x.jsonl")
    found = {entry["file"]: entry for entry in history(tmp_path)}
    assert len(found) == 2
    assert "error" in found["x.jsonl"]


def test_history_reads_a_bounded_part_of_a_huge_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "MAX_JOURNAL_BYTES", 16 * 1024)
    log = Journal("test", directory=tmp_path, header={})
    run_session(log, 200)  # ~50 KB: far beyond the limit, and the summary is in the slot
    (past,) = history(tmp_path)
    assert past["truncated"] is True
    assert past["stop_reason"] == "completed"


def test_history_command_prints_a_row_per_file_never_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(journal.ENV_DATA_DIR, str(tmp_path))
    run_session(Journal("test", header={}), 3)
    sessions = tmp_path / "sessions"
    (sessions / "a-garbage.jsonl").write_bytes(b"\x80\x81\x82" * 1000)
    (sessions / "b-types.jsonl").write_text(
        '{"kind":"header","profile":{"x":1},"started_at":[1]}\n'
        '{"kind":"sample","elapsed_s":"soon"}\n'
        '{"kind":"summary","duration_s":"long","max_intensity":"high","stop_reason":7}\n'
    )
    os.mkfifo(sessions / "c-fifo.jsonl")
    printed = rows(capsys)
    assert len(printed) == 4
    assert any("completed" in row for row in printed)
    assert sum("interrupted" in row for row in printed) == 1  # the garbage file, no summary
    assert any("not a regular file" in row for row in printed)
    assert len(rows(capsys, as_json=True)) == 4


def test_history_command_never_calls_a_closed_session_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(journal.ENV_DATA_DIR, str(tmp_path))
    log = Journal("test", header={})
    log.close(record(stop=None))  # the summary was written, the stop reason unknown
    (row,) = rows(capsys)
    assert "interrupted" not in row


def test_history_does_not_follow_a_symlink(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    target = tmp_path / "elsewhere.jsonl"
    target.write_text('{"kind":"header","profile":"p"}\n')
    (sessions / "link.jsonl").symlink_to(target)
    (entry,) = history(tmp_path)
    assert "error" in entry
    assert stat.S_ISLNK((sessions / "link.jsonl").lstat().st_mode)


@pytest.mark.timeout(10)
def test_an_outbox_file_that_is_a_fifo_never_hangs(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    directory.mkdir()
    os.mkfifo(directory / "outbox.jsonl")  # opening it for reading would wait for a writer
    outbox = Outbox(directory)
    assert outbox.peek() is None


def test_an_outbox_bigger_than_its_bound_keeps_the_first_events_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "outbox"
    directory.mkdir()
    lines = "".join(json.dumps({"type": "e", "n": n}) + "\n" for n in range(50))
    (directory / "outbox.jsonl").write_text(lines)
    outbox = Outbox(directory, max_events=20)
    assert len(outbox) == 21  # the bound, and the one events_dropped report it may hold
    assert outbox.peek() == {"type": "e", "n": 0}
    assert outbox.dropped == 29  # reported as events_dropped with the next event
