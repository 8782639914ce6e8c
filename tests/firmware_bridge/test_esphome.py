"""ESPHome Bluetooth proxies (firmware_bridge.transport.esphome) against a fake proxy.

The fake (tests/esphome_proxy.py) serves the ESPHome native API on 127.0.0.1 in front of
simulated massagers; the controller side is the real thing: aioesphomeapi's client and
ReconnectLogic, bleak-esphome's scanner and client, habluetooth's manager, bleak's front end,
bleak-retry-connector and our transport and link. Not covered: real ESP32 firmware, radio
range and timing, proxies found by mDNS, and reconnecting after a proxy restarts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import bleak
import pytest
from bleak import BleakClient
from bleak.exc import BleakError

from firmware_bridge import discovery
from firmware_bridge.compose import open_hardware
from firmware_bridge.device import LinkState, MassagerLink
from firmware_bridge.errors import MassagerError
from firmware_bridge.transport import BleakTransport
from firmware_bridge.transport.esphome import (
    DEFAULT_PORT,
    EsphomeSettingError,
    Proxies,
    ProxyAddress,
    ProxyBleakClient,
    ProxyError,
    open_proxies,
    parse_noise_key,
    parse_proxies,
    parse_proxy,
)
from sim.hosts import SimulatedMassager
from tests.esphome_proxy import PASSIVE_FEATURES, FakeProxy
from tests.rigs import until

KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(KEY).decode()
OTHER_KEY_TEXT = base64.b64encode(bytes(range(1, 33))).decode()


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("proxy-kitchen.local", ProxyAddress("proxy-kitchen.local", DEFAULT_PORT)),
        ("192.168.1.40:6054", ProxyAddress("192.168.1.40", 6054)),
        (" 10.0.0.2 ", ProxyAddress("10.0.0.2", 6053)),
        ("[fe80::1]:7000", ProxyAddress("fe80::1", 7000)),
        ("[fe80::1]", ProxyAddress("fe80::1", 6053)),
        ("fe80::1", ProxyAddress("fe80::1", 6053)),
    ],
)
def test_a_proxy_address_is_host_and_optional_port(text: str, expected: ProxyAddress) -> None:
    assert parse_proxy(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "host:",
        ":6053",
        "host:0",
        "host:65536",
        "host:http",
        "http://host",
        "a b",
        "[fe80::1",
        "[fe80::1]x",
        "user@host",
    ],
)
def test_a_bad_proxy_address_is_one_line_naming_the_flag(text: str) -> None:
    with pytest.raises(EsphomeSettingError) as caught:
        parse_proxy(text)
    message = str(caught.value)
    assert message.startswith("--esphome ")
    assert "\n" not in message
    assert isinstance(caught.value, ValueError)


def test_proxies_come_from_repeated_flags_or_commas_without_repeats() -> None:
    assert parse_proxies(["a.local,b.local:6054", "a.local:6053"]) == [
        ProxyAddress("a.local"),
        ProxyAddress("b.local", 6054),
    ]
    assert str(ProxyAddress("fe80::1", 6053)) == "[fe80::1]:6053"
    with pytest.raises(EsphomeSettingError, match=r"^--esphome: name at least one proxy"):
        parse_proxies([])


def test_the_noise_key_is_the_base64_of_32_bytes_or_nothing() -> None:
    assert parse_noise_key(KEY_TEXT) == KEY_TEXT
    assert parse_noise_key(f"  {KEY_TEXT}\n") == KEY_TEXT
    assert parse_noise_key(None) is None
    assert parse_noise_key("") is None
    for bad in ["secret", KEY_TEXT[:-4], base64.b64encode(bytes(16)).decode(), "%" * 44]:
        with pytest.raises(EsphomeSettingError) as caught:
            parse_noise_key(bad)
        assert str(caught.value).startswith("MASSAGER_ESPHOME_KEY: not an ESPHome noise key")
        assert "\n" not in str(caught.value)
    with pytest.raises(EsphomeSettingError, match=r"^config esphome\.key: "):
        parse_noise_key("secret", source="config esphome.key")


def test_importing_the_module_does_not_load_bleak_esphome() -> None:
    code = (
        "import sys, firmware_bridge.transport.esphome\n"
        "heavy = {'bleak_esphome', 'habluetooth', 'aioesphomeapi', 'zeroconf'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_backends_refuse_to_work_without_open_proxies() -> None:
    with pytest.raises(BleakError, match="proxies="):
        BleakClient("AA:BB:CC:DD:EE:FF", backend=ProxyBleakClient)


# -- a fake proxy on loopback --------------------------------------------------------------


@asynccontextmanager
async def serving(*proxies: FakeProxy) -> AsyncIterator[list[FakeProxy]]:
    try:
        for proxy in proxies:
            await proxy.start()
        yield list(proxies)
    finally:
        for proxy in proxies:
            await proxy.close()
        for massager in {id(m): m for p in proxies for m in p.massagers}.values():
            await massager.close()


async def test_a_scan_through_a_proxy_finds_the_massager_it_hears() -> None:
    massager = SimulatedMassager()
    original_scanner, original_client = bleak.BleakScanner, bleak.BleakClient
    async with serving(FakeProxy([massager])) as (fake,):
        async with open_proxies([fake.address], None) as proxies:
            assert bleak.BleakScanner is original_scanner  # habluetooth's swap was undone
            assert bleak.BleakClient is original_client
            (proxy,) = proxies.proxies
            assert (proxy.name, proxy.source, proxy.connectable) == (
                "Proxy Kitchen",
                fake.bluetooth_mac,
                True,
            )
            await until(lambda: proxy.slots == (3, 3), within=5.0)
            found = await discovery.scan(
                2.0,
                backend=proxies.scanner,
                stop_when=lambda s: s.address == massager.address,
                **proxies.scanner_kwargs,
            )
            (sighting,) = found
            assert (sighting.address, sighting.name, sighting.kind, sighting.rssi) == (
                massager.address,
                massager.name,
                "ours",
                -60,
            )
        assert fake.sessions == 1
    assert bleak.BleakScanner is original_scanner
    from habluetooth.central_manager import CentralBluetoothManager  # noqa: PLC0415

    assert CentralBluetoothManager.manager is None  # put back as it was


async def test_a_massager_is_driven_and_stopped_through_a_proxy() -> None:
    massager = SimulatedMassager()
    async with serving(FakeProxy([massager])) as (fake,):
        async with open_proxies([fake.address], None) as proxies:
            (proxy,) = proxies.proxies
            async with open_hardware(scan_timeout=3.0, stack=proxies.stack()) as transport:
                assert transport.device.address == massager.address
                assert transport.rssi == -60
                async with MassagerLink(transport, clock=massager.clock) as link:
                    assert link.state == LinkState.READY
                    assert link.capabilities is not None
                    assert link.zones == 3
                    assert massager.connected
                    assert proxy.slots == (2, 3)
                    assert transport.max_frame_size == 244  # the proxy's MTU 247, less ATT's 3
                    await link.start()
                    link.set_levels((4, 5, 6))
                    await until(lambda: link.applied == (4, 5, 6))
                    assert massager.firmware.levels == (4, 5, 6)
                    result = await link.stop()
                    assert result.confirmed
                    assert massager.firmware.levels == (0, 0, 0)
            assert not massager.connected
            await until(lambda: proxy.slots == (3, 3), within=5.0)


async def test_the_loudest_proxy_with_a_free_slot_carries_the_connection() -> None:
    massager = SimulatedMassager()
    far = FakeProxy([massager], name="proxy-hall", bluetooth_mac="AA:BB:CC:00:00:02", rssi=-85)
    near = FakeProxy([massager], name="proxy-bath", bluetooth_mac="AA:BB:CC:00:00:03", rssi=-50)
    async with serving(far, near):
        async with open_proxies([far.address, near.address], None) as proxies:
            await until(lambda: all(p.slots == (3, 3) for p in proxies.proxies), within=5.0)
            await _heard(proxies, massager.address)
            client = BleakClient(massager.address, backend=ProxyBleakClient, proxies=proxies)
            await client.connect()
            try:
                assert near._links
                assert not far._links
                assert client.is_connected
            finally:
                await client.disconnect()


async def test_no_free_slot_and_no_proxy_hearing_it_are_one_line_each() -> None:
    first, second = SimulatedMassager(name="Foot-A"), SimulatedMassager(name="Foot-B")
    async with serving(FakeProxy([first, second], slots=1)) as (fake,):
        async with open_proxies([fake.address], None) as proxies:
            await until(lambda: proxies.proxies[0].slots == (1, 1), within=5.0)
            await _heard(proxies, first.address, second.address)
            one = BleakClient(first.address, backend=ProxyBleakClient, proxies=proxies)
            await one.connect()
            try:
                await until(lambda: proxies.proxies[0].slots == (0, 1), within=5.0)
                other = BleakClient(second.address, backend=ProxyBleakClient, proxies=proxies)
                with pytest.raises(
                    BleakError, match="no free slot on the ESPHome proxies"
                ) as caught:
                    await other.connect()
                assert "\n" not in str(caught.value)
                # What a person sees through the transport (one attempt: no retry backoff).
                device = proxies.manager.async_ble_device_from_address(second.address, True)
                assert device is not None
                transport = BleakTransport(
                    device,
                    backend=ProxyBleakClient,
                    backend_kwargs=proxies.client_kwargs,
                    connect_attempts=1,
                )
                with pytest.raises(MassagerError) as seen:
                    await transport.connect()
                line = str(seen.value)
                assert "\n" not in line
                assert "no free slot on the ESPHome proxies that hear it" in line
            finally:
                await one.disconnect()
            nobody = BleakClient("C0:00:00:00:00:01", backend=ProxyBleakClient, proxies=proxies)
            with pytest.raises(BleakError, match=r"^not found: no ESPHome proxy hears it$"):
                await nobody.connect()


async def test_a_proxy_without_active_connections_is_refused_or_only_listens() -> None:
    massager = SimulatedMassager()
    async with serving(FakeProxy([massager], features=PASSIVE_FEATURES)) as (fake,):
        with pytest.raises(ProxyError) as caught:
            async with open_proxies([fake.address], None):
                pytest.fail("a listen-only proxy cannot reach a massager")
        assert str(caught.value) == (
            f"ESPHome proxy Proxy Kitchen ({fake.address}) cannot connect to devices (it only "
            "listens); set `bluetooth_proxy: active: true` in its YAML"
        )
        async with open_proxies([fake.address], None, need_connections=False) as proxies:
            assert not proxies.proxies[0].connectable
            assert proxies.proxies[0].slots is None
            found = await discovery.scan(
                2.0,
                backend=proxies.scanner,
                stop_when=lambda s: s.address == massager.address,
                **proxies.scanner_kwargs,
            )
            assert [s.address for s in found] == [massager.address]  # heard: it listens
            client = BleakClient(massager.address, backend=ProxyBleakClient, proxies=proxies)
            with pytest.raises(BleakError, match="without active connections"):
                await client.connect()


# -- the proxy's API: reachability and the noise key --------------------------------------


async def test_an_encrypted_proxy_works_with_its_key_and_refuses_another() -> None:
    massager = SimulatedMassager()
    async with serving(FakeProxy([massager], noise_psk=KEY)) as (fake,):
        async with open_proxies([fake.address], KEY_TEXT) as proxies:
            found = await discovery.scan(
                2.0,
                backend=proxies.scanner,
                stop_when=lambda s: s.address == massager.address,
                **proxies.scanner_kwargs,
            )
            assert [s.address for s in found] == [massager.address]
        with pytest.raises(ProxyError) as caught:
            async with open_proxies([fake.address], OTHER_KEY_TEXT):
                pytest.fail("connected with the wrong key")
        assert str(caught.value).startswith(
            f"ESPHome proxy {fake.address} rejected the noise key; set MASSAGER_ESPHOME_KEY"
        )
        with pytest.raises(ProxyError) as caught:
            async with open_proxies([fake.address], None):
                pytest.fail("connected without a key")
        assert str(caught.value).startswith(
            f"ESPHome proxy {fake.address} requires encryption; set MASSAGER_ESPHOME_KEY"
        )
    async with serving(FakeProxy([])) as (plain,):
        with pytest.raises(ProxyError) as caught:
            async with open_proxies([plain.address], KEY_TEXT):
                pytest.fail("connected with a key to a plaintext proxy")
        assert str(caught.value).startswith(
            f"ESPHome proxy {plain.address} has no API encryption but a noise key was given"
        )


async def test_an_unreachable_proxy_is_one_line() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProxyError) as caught:
        async with open_proxies([f"127.0.0.1:{port}"], None, connect_timeout=5.0):
            pytest.fail("connected to nothing")
    line = str(caught.value)
    assert line.startswith(f"ESPHome proxy 127.0.0.1:{port} is unreachable; is it powered")
    assert "\n" not in line


async def test_a_proxy_that_never_answers_times_out_in_one_line() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the TCP connection, says nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProxyError) as caught:
            async with open_proxies([f"127.0.0.1:{port}"], None, connect_timeout=0.5):
                pytest.fail("connected to a silent server")
        assert str(caught.value) == (
            f"ESPHome proxy 127.0.0.1:{port} is unreachable: no answer within 0.5 s; is it "
            "powered, on this network, and is the address right?"
        )
    finally:
        server.close()
        await server.wait_closed()


async def test_losing_the_proxy_drops_the_massager_link() -> None:
    massager = SimulatedMassager()
    async with serving(FakeProxy([massager])) as (fake,):
        async with open_proxies([fake.address], None) as proxies:
            await _heard(proxies, massager.address)
            lost: list[str] = []
            client = BleakClient(
                massager.address,
                disconnected_callback=lambda _c: lost.append("lost"),
                backend=ProxyBleakClient,
                proxies=proxies,
            )
            await client.connect()
            await fake.close()  # the proxy goes away (power cut, Wi-Fi gone)
            await until(lambda: lost == ["lost"], within=5.0)
            assert not client.is_connected
            assert not proxies.proxies[0].online


async def _heard(proxies: Proxies, *addresses: str) -> None:
    """Wait until the proxies have heard each address (the manager knows a path to it)."""

    def known() -> bool:
        return all(proxies.manager.async_scanner_devices_by_address(a, False) for a in addresses)

    await until(known, within=5.0)


async def _cli(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_bridge",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_scan_and_run_reach_a_massager_through_a_proxy_from_the_command_line() -> None:
    massager = SimulatedMassager()
    async with serving(FakeProxy([massager])) as (fake,):
        code, out, err = await _cli("scan", "--esphome", fake.address, "--json", "--timeout", "3")
        assert code == 0, err
        seen = [json.loads(line) for line in out.splitlines()]
        assert [(s["address"], s["kind"]) for s in seen] == [(massager.address, "ours")]
        code, _, err = await _cli("setup", "--person", "ann", "--none-apply")
        assert code == 0, err
        code, out, err = await _cli(
            "run", "relax", "--person", "ann", "--esphome", fake.address,
            "--address", massager.address, "--max-minutes", "0.1", "--json", "--mqtt", "off",
        )  # fmt: skip
        assert code == 0, err
        summary = json.loads(out)
        assert summary["stop_reason"] == "timeout"  # the 6 s limit, played through the proxy
        assert summary["stop_confirmed"] is True
        assert summary["device"]["address"] == massager.address
        assert massager.firmware.levels == (0, 0, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scan", "--esphome", "bad host:x"], "--esphome 'bad host:x': expected HOST or HOST:PORT"),
        (["run", "relax", "--esphome", "a:99999"], "--esphome 'a:99999'"),
        (["scan", "--esphome", "a", "--hci", "usb:0"], "--hci and --esphome: choose one"),
        (["run", "relax", "--sim", "--esphome", "a"], "--sim cannot be combined"),
    ],
)
def test_bad_esphome_flags_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware_bridge.cli import main  # noqa: PLC0415 - the CLI, as a user calls it

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1


def test_the_noise_key_can_come_from_config_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware_bridge.cli import main  # noqa: PLC0415 - the CLI, as a user calls it

    config = tmp_path / "config.toml"
    config.write_text('esphome_key = "not-a-key"\n')
    monkeypatch.setenv("MASSAGER_CONFIG", str(config))
    monkeypatch.delenv("MASSAGER_ESPHOME_KEY", raising=False)
    assert main(["scan", "--esphome", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "esphome_key in config.toml: not an ESPHome noise key" in err, err
    assert "not-a-key" not in err  # a secret is never echoed
