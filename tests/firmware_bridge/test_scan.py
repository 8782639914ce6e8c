"""`massager scan` and discovery: the order, the live count, Bluetooth-off advice, --hci lines."""

from __future__ import annotations

import functools
import io
import json
from typing import Any, Literal

import pytest
from bleak import BleakScanner
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason

from firmware_bridge import discovery
from firmware_bridge import discovery as discovery_module
from firmware_bridge.cli import main
from firmware_bridge.cli import scan as scan_module
from firmware_bridge.cli.scan import LiveCount
from firmware_bridge.protocol import SERVICE_UUID

SINGLE_BYTE_SERVICE = "0000fff0-0000-1000-8000-00805f9b34fb"  # library/single-byte.toml
# (address, name, service UUIDs, RSSI)
HEARD = [
    ("00:00:00:00:00:01", "Zebra headphones", [], -40),
    ("00:00:00:00:00:02", "Vibe1-kitchen", [SINGLE_BYTE_SERVICE], -70),
    ("00:00:00:00:00:03", "FootMassager-far", [SERVICE_UUID], -80),
    ("00:00:00:00:00:04", "apple tv", [], -60),
    ("00:00:00:00:00:05", "FootMassager-near", [SERVICE_UUID], -50),
]


class FakeScanner(BaseBleakScanner):
    """A bleak backend that hears HEARD (or raises `failure` on start)."""

    failure: Exception | None = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)

    async def start(self) -> None:
        if self.failure is not None:
            raise self.failure
        self.seen_devices = {}
        for address, name, uuids, rssi in HEARD:
            adv = AdvertisementData(name, {}, {}, uuids, None, rssi, ())
            device = self.create_or_update_device(address, address, name, None, adv)
            self.call_detection_callbacks(device, adv)

    async def stop(self) -> None:
        return None


@pytest.fixture
def fake_air(monkeypatch: pytest.MonkeyPatch) -> type[FakeScanner]:
    monkeypatch.setattr(
        discovery, "BleakScanner", functools.partial(BleakScanner, backend=FakeScanner)
    )
    monkeypatch.setattr(FakeScanner, "failure", None)
    return FakeScanner


async def test_ours_first_then_described_then_others_by_name(fake_air: type[FakeScanner]) -> None:
    counts: list[int] = []
    found = await discovery.scan(0.1, on_count=counts.append)
    assert [(s.name, s.kind) for s in found] == [
        ("FootMassager-near", "ours"),  # strongest first among ours
        ("FootMassager-far", "ours"),
        ("Vibe1-kitchen", "described"),
        ("apple tv", "other"),  # others by name, not by signal
        ("Zebra headphones", "other"),
    ]
    assert found[2].description_id == "single-byte"
    assert counts == [1, 2, 3, 4, 5]


def test_scan_prints_one_line_or_json_object_per_device(
    fake_air: type[FakeScanner], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--timeout", "0.5"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("00:00:00:00:00:05   -50 dBm  FootMassager-near  (massager)")
    assert lines[2].endswith("Vibe1-kitchen  (described: single-byte)")
    assert "scanning" not in err  # stderr is not a terminal: no live count
    assert main(["scan", "--timeout", "0.5", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["kind"] for r in records] == ["ours", "ours", "described", "other", "other"]
    assert records[0] == {
        "address": "00:00:00:00:00:05",
        "name": "FootMassager-near",
        "rssi": -50,
        "kind": "ours",
        "description": "protocol-v1",  # the shipped description of our own protocol
        "service_uuids": [SERVICE_UUID],
    }


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_count_rewrites_one_line_on_a_terminal_only() -> None:
    screen = Terminal()
    with LiveCount(screen) as live:
        live.update(3)
    assert screen.getvalue() == "\rscanning… 0 found\x1b[K\rscanning… 3 found\x1b[K\r\x1b[K"
    log = io.StringIO()
    with LiveCount(log) as live:
        live.update(3)
    assert log.getvalue() == ""


@pytest.mark.parametrize(
    ("reason", "advice"),
    [
        (BleakBluetoothNotAvailableReason.POWERED_OFF, "Bluetooth is turned off; turn it on"),
        (BleakBluetoothNotAvailableReason.NO_BLUETOOTH, "no Bluetooth adapter was found"),
        (BleakBluetoothNotAvailableReason.DENIED_BY_USER, "refused Bluetooth access; allow it"),
        (BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM, "to the `bluetooth` group"),
        (BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE, "cannot act as a Bluetooth Low"),
    ],
)
def test_bluetooth_unavailable_is_one_line_of_advice_exit_1(
    fake_air: type[FakeScanner],
    capsys: pytest.CaptureFixture[str],
    reason: BleakBluetoothNotAvailableReason,
    advice: str,
) -> None:
    fake_air.failure = BleakBluetoothNotAvailableError("raw words", reason)
    assert main(["scan", "--timeout", "0.5"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("massager: error: ")
    assert advice in err
    assert err.count("\n") == 1


def test_every_unavailable_reason_has_advice() -> None:
    assert set(discovery.UNAVAILABLE_ADVICE) == set(BleakBluetoothNotAvailableReason)


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["scan", "--hci", "usb:0"], 1, "no usable USB Bluetooth dongle"),
        (["scan", "--hci", "serial:/dev/no-such-port"], 1, "no such device"),
        (["scan", "--hci", "tcp-client:127.0.0.1:1"], 1, "connection refused"),
        (["scan", "--hci", "bogus:1"], 2, "unknown transport 'bogus'"),
        (["scan", "--hci", "usb"], 2, "usb needs a value after the colon"),
        (["run", "relax", "--hci", "bogus:1"], 2, "unknown transport 'bogus'"),
        (["run", "relax", "--hci", "tcp-client"], 2, "tcp-client needs a value"),
    ],
)
def test_every_hci_moniker_failure_is_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int, words: str
) -> None:
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse: a moniker that is not one is bad input
        got = int(str(exc.code))
    assert got == code
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_scan_defaults_to_the_discovery_timeout() -> None:
    """The CLI keeps its own copy so building the parser needs no bleak; they must agree."""
    assert scan_module.SCAN_TIMEOUT_S == discovery_module.SCAN_TIMEOUT_S
