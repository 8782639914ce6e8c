"""`massager devices`: remembered massagers per person, validate and known."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import compose
from firmware_bridge.cli import main
from firmware_bridge.compose import Stack
from firmware_bridge.store import Store
from sim.hosts import InMemoryBleakClient, InMemoryBleakScanner, SimulatedMassager, VirtualAir

LIBRARY = Path(__file__).parents[2] / "firmware_bridge" / "devices" / "library"


def test_remembered_massagers_are_listed_last_used_first_and_forgotten(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Store.open() as store:
        store.remember_device("ana", "AA:BB:CC:DD:EE:01", name="Foot-old")
        store.remember_device("ana", "AA:BB:CC:DD:EE:02", name="Vibe1-x", description="single-byte")
        store.remember_device("bo", "AA:BB:CC:DD:EE:03")
    assert main(["devices", "--person", "ana"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["AA:BB:CC:DD:EE:02", "Vibe1-x", "single-byte"],
        ["AA:BB:CC:DD:EE:01", "Foot-old", "protocol-v1"],
    ]
    assert main(["devices", "--person", "ana", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (first["address"], first["description"]) == ("AA:BB:CC:DD:EE:02", "single-byte")
    assert main(["devices", "forget", "aa:bb:cc:dd:ee:02", "--person", "ana"]) == 0
    assert main(["devices", "forget", "AA:BB:CC:DD:EE:02", "--person", "ana"]) == 2
    assert "no remembered massager AA:BB:CC:DD:EE:02" in capsys.readouterr().err
    assert main(["devices", "forget", "--all", "--person", "ana"]) == 0
    capsys.readouterr()
    assert main(["devices", "--person", "ana"]) == 0
    assert "ana has no remembered massagers" in capsys.readouterr().out
    with Store.open() as store:
        assert [d.address for d in store.devices("bo")] == ["AA:BB:CC:DD:EE:03"]


def test_forget_needs_an_address_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["devices", "forget"])
    assert caught.value.code == 2


def test_validate_says_ok_with_id_driver_and_failsafe(capsys: pytest.CaptureFixture[str]) -> None:
    path = LIBRARY / "single-byte.toml"
    assert main(["devices", "validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok (single-byte, simple-write, failsafe none)\n"


def test_validate_names_each_problem_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text('schema = 1\nid = "mine"\n')
    assert main(["devices", "validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) >= 2
    assert all(line.startswith("massager: error: mine.toml: ") for line in err)
    assert any("driver" in line for line in err)


def test_known_lists_every_description_with_driver_failsafe_and_match(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["devices", "known", "--json"]) == 0
    found = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {p.stem for p in LIBRARY.glob("*.toml")} <= set(found)
    assert found["protocol-v1"]["failsafe"] == "watchdog"
    assert "name Vibe1-*" in found["single-byte"]["match"]
    assert main(["devices", "known"]) == 0
    assert any(line.startswith("single-byte") for line in capsys.readouterr().out.splitlines())


@pytest.fixture
def nearby(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SimulatedMassager]]:
    """`massager run` without --sim reaches the simulated massagers in this list (tier 1)."""
    found: list[SimulatedMassager] = []
    air = VirtualAir()
    stack = Stack(InMemoryBleakScanner, InMemoryBleakClient, {"air": air})
    monkeypatch.setattr(compose, "Stack", lambda: stack)
    monkeypatch.setattr(air, "massagers", _Live(found))
    with open(os.devnull, encoding="utf-8") as no_terminal:  # as in CI: stdin is no terminal
        monkeypatch.setattr(sys, "stdin", no_terminal)
        yield found
        monkeypatch.undo()
    for massager in found:
        asyncio.run(massager.close())


class _Live(dict[str, SimulatedMassager]):
    """VirtualAir.massagers that follows a list the test fills."""

    def __init__(self, source: list[SimulatedMassager]) -> None:
        super().__init__()
        self.source = source

    def values(self) -> Any:
        return list(self.source)


def test_run_without_address_refuses_to_guess_among_several_then_remembers_the_one_used(
    nearby: list[SimulatedMassager], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["setup", "--none-apply"]) == 0
    nearby += [SimulatedMassager(name="Foot-A"), SimulatedMassager(name="Foot-B")]
    capsys.readouterr()
    assert main(["run", "relax", "--scan-timeout", "3"]) == 2  # stdin is not a terminal here
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert "2 massagers in range; pass --address ADDRESS" in err[0]
    assert sorted(line.split()[2] for line in err[1:]) == sorted(m.address for m in nearby)
    chosen = nearby[1]
    code = main(["run", "relax", "--address", chosen.address, "--max-minutes", "0.1"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["devices"]) == 0
    assert capsys.readouterr().out.split()[:2] == [chosen.address, "Foot-B"]
