"""`massager setup`, `checkin`, `course` and `report` as a person uses them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from firmware_bridge.cli import main
from firmware_bridge.person import SessionFacts
from firmware_bridge.person.screening import KEYS
from firmware_bridge.record import Sample
from firmware_bridge.store import Store

NONE_APPLY = "\n".join(f"{key} = false" for key in KEYS) + "\n"


def _cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "firmware_bridge", *args],
        capture_output=True,
        text=True,
        stdin=stdin,
        timeout=30,
        check=False,
    )


def _answers(tmp_path: Path, **yes: bool) -> str:
    text = "\n".join(f"{key} = {'true' if yes.get(key) else 'false'}" for key in KEYS)
    path = tmp_path / "answers.toml"
    path.write_text(text + "\n")
    return str(path)


def _one_line_error(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for part in parts:
        assert part in lines[0]


# -- setup ----------------------------------------------------------------------------------


def test_setup_without_a_terminal_never_waits_stdin_closed() -> None:
    done = _cli("setup", "--person", "ana")
    _one_line_error(done, "--answers FILE", "--none-apply")


def test_setup_without_a_terminal_never_waits_stdin_a_silent_pipe() -> None:
    read, write = os.pipe()  # nobody ever writes: a read would block until the timeout
    try:
        done = _cli("setup", "--person", "ana", stdin=read)
    finally:
        os.close(read)
        os.close(write)
    _one_line_error(done, "--answers FILE")


def test_none_apply_is_recorded_with_the_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--person", "ana", "--none-apply"]) == 0
    assert "none of the listed conditions applies" in capsys.readouterr().out
    with Store.open() as store:
        screening = store.latest_screening("ana")
    assert screening is not None
    assert screening.source == "none-apply"
    assert not any(screening.answers.values())
    assert (dt.datetime.now(dt.UTC) - screening.at).total_seconds() < 60


def test_a_yes_from_a_file_blocks_and_a_clearance_unblocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["setup", "--person", "bo", "--answers", _answers(tmp_path, diabetes=True)]) == 0
    said = capsys.readouterr().out
    assert "Sessions are paused for bo" in said
    assert "--clinician-cleared" in said
    assert main(["course", "--person", "bo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["next"]["allowed"] is False
    assert main(["setup", "--person", "bo", "--clinician-cleared"]) == 0
    said = capsys.readouterr().out
    assert "cleared by a clinician" in said
    assert "stays low" in said  # diabetes: a low fixed ceiling, no progression
    assert main(["course", "--person", "bo", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["next"]
    assert plan["allowed"] is True
    assert plan["ceiling"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NONE_APPLY + "fever = false\n", "unknown question 'fever'"),
        (NONE_APPLY.replace("cancer = false", "cancer = 0"), "cancer: must be true or false"),
        (NONE_APPLY.replace("epilepsy = false\n", ""), "epilepsy: missing"),
        ("open_wounds = [[[[", "not valid TOML"),
        ("x = " + "[" * 5000 + "]" * 5000, "not valid TOML"),
    ],
)
def test_a_bad_answers_file_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "answers.toml"
    path.write_text(text)
    _one_line_error(_cli("setup", "--answers", str(path)), str(path), expected)


def test_a_binary_or_fifo_answers_file_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    _one_line_error(_cli("setup", "--answers", str(binary)), "not UTF-8")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    _one_line_error(_cli("setup", "--answers", str(fifo)), "named pipe")


# -- checkin and course -----------------------------------------------------------------------


def _played(person: str, started: dt.datetime, *, before: int = 2) -> SessionFacts:
    facts = SessionFacts(
        id=f"{person}-{started:%m%d}",
        started_at=started,
        profile="heel-spur",
        device="simulator",
        ceiling=0.25,
        cap=4,
        planned_s=870,
        before=before,
    )
    samples = [
        Sample(
            float(t), 870 - t, "warm-up", t / 300, t / 300, (t / 300, t / 600, 0.1), None, 90, 30
        )
        for t in range(90)
    ]
    with Store.open() as store:
        store.ensure_person(person)
        store.begin_session(person, facts, None)
        store.add_samples(facts.id, samples)
        store.add_rating(facts.id, 30.0, 2, "person")
        store.add_rating(facts.id, 60.0, 3, "simulated")
        store.finish_session(facts.id, duration_s=870, stop_reason="completed")
    return facts


def test_checkin_goes_to_last_evenings_session(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkin", "--person", "cy", "3"]) == 1  # nothing to check in on yet
    assert "no session of cy waits" in capsys.readouterr().err
    _played("cy", dt.datetime.now(dt.UTC) - dt.timedelta(hours=12))
    assert main(["checkin", "--person", "cy", "4"]) == 0
    assert "Recorded 4" in capsys.readouterr().out
    with Store.open() as store:
        (session,) = store.sessions("cy")
    assert session.morning == 4
    assert main(["checkin", "--person", "cy", "1"]) == 1  # once per session


def test_checkin_without_a_rating_and_no_terminal_refuses() -> None:
    _one_line_error(_cli("checkin", "--person", "cy"), "massager checkin N")
    _one_line_error(_cli("checkin", "11"), "0-10")


def test_course_says_what_the_next_session_is_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["setup", "--person", "di", "--none-apply"]) == 0
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    _played("di", yesterday, before=2)
    assert main(["checkin", "--person", "di", "5"]) == 0
    capsys.readouterr()
    assert main(["course", "--person", "di"]) == 0
    text = capsys.readouterr().out
    assert "1 of 14 sessions done" in text
    assert "next morning worse than before (5 > 2)" in text
    assert "ceiling 19% of the device, 80% of the profile's length" in text


# -- report ---------------------------------------------------------------------------------


def test_report_draws_a_png_of_the_last_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _played("ed", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    out = tmp_path / "last.png"
    assert main(["report", "--person", "ed", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.stat().st_mode & 0o077 == 0  # a person's data: user-only
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (560, 1000)
    plot = image[220:500, 300:880]  # below the legend, inside the axes
    blue = (plot[..., 0] < 0.2) & (plot[..., 1] > 0.4) & (plot[..., 2] > 0.6)
    orange = (
        (plot[..., 0] > 0.9) & (plot[..., 1] > 0.4) & (plot[..., 1] < 0.6) & (plot[..., 2] < 0.2)
    )
    assert blue.sum() > 100, "commanded heel: drawn"
    assert orange.sum() > 300, "commanded arch: drawn"


def test_report_exports_the_same_data_as_csv_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    facts = _played("fa", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    assert main(["report", "--person", "fa", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("t,segment,commanded_heel")
    assert len(lines) == 1 + 90
    assert main(["report", facts.id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["samples"]) == 90
    assert {r["source"] for r in data["ratings"]} == {"person", "simulated"}


def test_report_without_matplotlib_says_how_to_get_it() -> None:
    _played("gu", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from firmware_bridge.cli import main; sys.exit(main(['report', '--person', 'gu']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "massager: error: reports need matplotlib: pip install 'firmware-bridge[report]'"
    )


def test_report_with_no_sessions_or_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--person", "nobody"]) == 1
    assert "no sessions of nobody yet" in capsys.readouterr().err
    assert main(["report", "nosuch"]) == 2
    assert "no session 'nosuch'" in capsys.readouterr().err


def test_a_check_in_right_after_the_session_is_not_a_morning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _played("ev", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert main(["checkin", "--person", "ev", "0"]) == 1
    assert "no session of ev waits" in capsys.readouterr().err
    with Store.open() as store:
        (session,) = store.sessions("ev")
    assert session.morning is None
