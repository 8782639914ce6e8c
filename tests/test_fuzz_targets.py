"""The fuzz targets (fuzz/) on their seeds, on hostile inputs and on every saved crash input.

A crash the fuzzer finds is saved in fuzz/regressions/TARGET/ and runs here from then on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_bridge.errors import ProtocolError
from firmware_bridge.protocol import decode
from firmware_bridge.telemetry.commands import Refused, command_value
from firmware_bridge.telemetry.mqtt import BrokerSettings
from fuzz import HERE, decoder, mqtt_commands, profile_loader, targets
from profiles.loader import load_text

TARGETS = targets()
DEEP = 3000  # nesting levels: past the recursion limit of every recursive parser here

# Known crashes whose fix belongs to a module the fuzz targets only call. Strict: once fixed,
# the input passes, the xfail fails, and the entry is deleted here.
OPEN: dict[str, tuple[type[Exception], str]] = {}  # crashes found and not fixed yet

HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "nul": b"\x00",
    "nul-run": b"\x00" * 4096,
    "ff-run": b"\xff" * 4096,
    "not-utf8": b"\xc3\x28\xa0\xa1\xe2\x28\xa1",
    "surrogate": b"\xed\xa0\x80",
    "bidi-override": "\u202e[mqtt]\nurl = 'mqtt://\u202ehost'\n".encode(),
    "deep-arrays": b"x = " + b"[" * DEEP + b"]" * DEEP,
    "deep-inline-tables": b"x = " + b"{a=" * DEEP + b"1" + b"}" * DEEP,
    "deep-json": b"{" * DEEP + b"}" * DEEP,
    "deep-json-value": b'{"value":' + b"[" * 27 + b"]" * 27 + b"}",
    "json-infinities": b'{"value": 1e999, "ts": -1e999, "request_id": "x"}',
    "json-nan": b'{"value": NaN, "ts": NaN}',
    "stop-id-newline": b'{"request_id": "abc\\n"}',
    "stop-id-long": b'{"request_id": "' + b"a" * 65 + b'"}',
    "longest-frame": b"\x01\x00\x84\x0e" + bytes(14) + b"\x00\x00",
    "frame-too-long": b"\x01\x00\x84\x0f" + bytes(15) + b"\x00\x00",
    "status-all-ones": bytes.fromhex("01ff8407ffffffffffffff"),
    "structured-junk": b"\x00" + bytes(range(256)) * 4,
    "structured-ff": b"\x00" + b"\xff" * 512,
    "profile-inf": b'name = "x"\ntitle = "t"\n[[segments]]\nkind = "steady"\nduration_s = inf\n'
    b"level = nan\ncool_down = true\n",
    "profile-repeat-max": b'name = "x"\ntitle = "t"\n[[segments]]\nkind = "repeat"\ntimes = 20\n'
    b'segments = [{kind = "pulse", duration_s = 90, level = 0.4, on_s = 0.05, off_s = 0.05,'
    b" cool_down = true}]\n",
    "profile-keys-everywhere": b'name = "x"\ntitle = "t"\n"a\\nb" = 1\n[[segments]]\n'
    b'kind = "alternate"\nduration_s = 30\nlevel = 0.1\nswitch_s = 0.25\nzones = ["heel"]\n',
    "config-long-host": b'[mqtt]\nurl = "mqtt://' + b"a" * 300 + b':1883"\n',
    "config-bad-port": b'[mqtt]\nurl = "mqtts://u:p@h:99999"\n',
    "config-ipv6": b'[mqtt]\nurl = "mqtt://[::1"\n',
    "config-idna": '[mqtt]\nurl = "mqtt://\u00e9xample.\u0661.com"\n'.encode(),
    "config-ca-newline": b'[mqtt]\nurl = "mqtt://h"\nca_file = "a\\nb"\n',
    "config-typed": b"[mqtt]\nurl = 1979-05-27T07:32:00Z\npassword = [1, 2]\n",
}


def _run(target: str) -> Callable[[bytes], None]:
    run: Callable[[bytes], None] = importlib.import_module(f"fuzz.{target}").TestOneInput
    return run


def _files(folder: str) -> list[tuple[str, Path]]:
    return [
        (target, path)
        for target in TARGETS
        for path in sorted((HERE / folder / target).glob("*"))
        if path.is_file()
    ]


def _regression(target: str, path: Path) -> object:
    key = f"{target}/{path.name}"
    if key not in OPEN:
        return pytest.param(target, path, id=key)
    raises, reason = OPEN[key]
    mark = pytest.mark.xfail(strict=True, raises=raises, reason=reason)
    return pytest.param(target, path, id=key, marks=mark)


def test_every_target_is_complete() -> None:
    assert TARGETS == ["decoder", "mqtt_commands", "mqtt_config", "profile_loader"]
    for target in TARGETS:
        module = importlib.import_module(f"fuzz.{target}")
        assert callable(module.TestOneInput)
        assert isinstance(module.MAX_LEN, int)
        seeds = [path for path in (HERE / "corpus" / target).glob("*") if path.is_file()]
        assert seeds, f"fuzz/corpus/{target}/ has no seeds"
        assert all(len(seed.read_bytes()) <= module.MAX_LEN for seed in seeds)


@pytest.mark.parametrize(("target", "path"), _files("corpus"), ids=lambda v: getattr(v, "name", v))
def test_seeds_are_valid_and_run_clean(target: str, path: Path) -> None:
    data = path.read_bytes()
    _run(target)(data)
    # A seed the parser refuses only tests the refusal: each must get past it.
    if target == "decoder":
        decode(data)
    elif target == "mqtt_commands":
        assert not isinstance(command_value(data, session_started_ts=0.0), Refused)
    elif target == "mqtt_config":
        BrokerSettings.from_config_text(data.decode(), path.name, env={})
    elif not data.startswith(profile_loader.STRUCTURED):
        load_text(data.decode(), path.name)


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("target", TARGETS)
def test_hostile_inputs_raise_nothing_unexpected(target: str, data: bytes) -> None:
    _run(target)(data)


@pytest.mark.parametrize(
    ("target", "path"), [_regression(target, path) for target, path in _files("regressions")]
)
def test_saved_crash_inputs_stay_fixed(target: str, path: Path) -> None:
    _run(target)(path.read_bytes())


def test_an_unexpected_exception_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> None:
        raise IndexError("index out of range")

    monkeypatch.setattr(decoder, "decode", broken)
    with pytest.raises(IndexError):
        decoder.TestOneInput(b"\x01\x00\x03\x00\x22\xb7")


def test_the_documented_error_is_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuses(data: bytes) -> None:
        raise ProtocolError("CRC mismatch")

    monkeypatch.setattr(decoder, "decode", refuses)
    decoder.TestOneInput(b"\x01\x00\x03\x00\x22\xb7")


def test_a_rating_out_of_range_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt_commands, "rating", lambda value: 11)
    with pytest.raises(AssertionError, match="rating 11"):
        mqtt_commands.TestOneInput(b"7")
