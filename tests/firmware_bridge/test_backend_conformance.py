"""Our bleak backends against the installed bleak's backend contract (mocks always satisfy it;
the real base classes may not)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from bleak import BleakClient
from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bleak.backends.service import BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from firmware_bridge.protocol import CONTROL_CHAR_UUID, TELEMETRY_CHAR_UUID, Hello, encode
from firmware_bridge.transport.bumble_backend import BumbleBleakClient, BumbleBleakScanner
from sim.hosts import InMemoryBleakClient, InMemoryBleakScanner
from tests.rigs import Rig

CLIENTS = [InMemoryBleakClient, BumbleBleakClient]
SCANNERS = [InMemoryBleakScanner, BumbleBleakScanner]


def _abstract_methods(base: type) -> set[str]:
    return set(getattr(base, "__abstractmethods__", set()))


@pytest.mark.parametrize("backend", CLIENTS)
def test_client_backend_implements_every_abstract_method(backend: type[BaseBleakClient]) -> None:
    assert issubclass(backend, BaseBleakClient)
    assert not inspect.isabstract(backend), _abstract_methods(backend)
    assert {"connect", "disconnect", "write_gatt_char", "start_notify"} <= _abstract_methods(
        BaseBleakClient
    )


@pytest.mark.parametrize("backend", SCANNERS)
def test_scanner_backend_implements_every_abstract_method(backend: type[BaseBleakScanner]) -> None:
    assert issubclass(backend, BaseBleakScanner)
    assert not inspect.isabstract(backend)


@pytest.mark.parametrize(("backend", "base"), [(c, BaseBleakClient) for c in CLIENTS])
def test_overrides_accept_every_argument_bleak_passes(backend: type, base: type) -> None:
    for name in _abstract_methods(base) | {"__init__"}:
        if isinstance(getattr(base, name), property):
            assert isinstance(getattr(backend, name), property), name
            continue
        ours = inspect.signature(getattr(backend, name))
        theirs = inspect.signature(getattr(base, name))
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in ours.parameters.values())
        for param in theirs.parameters.values():
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                assert any(p.kind is param.kind for p in ours.parameters.values()), (name, param)
                continue
            assert param.name in ours.parameters or takes_kwargs, (backend.__name__, name, param)


async def test_bleak_front_end_drives_the_backend(rig: Rig) -> None:
    disconnected: list[BleakClient] = []
    client = await establish_connection(
        BleakClient,
        rig.device,
        "conformance",
        disconnected_callback=disconnected.append,
        backend=rig.transport.backend,
        **rig.transport.backend_kwargs,
    )
    try:
        # A backend must set `services` during connect (bleak raises otherwise).
        assert isinstance(client.services, BleakGATTServiceCollection)
        control = client.services.get_characteristic(CONTROL_CHAR_UUID)
        assert control is not None
        assert {"write", "write-without-response"} <= set(control.properties)
        assert control.max_write_without_response_size == 244
        got: list[bytes] = []
        await client.start_notify(TELEMETRY_CHAR_UUID, lambda _c, data: got.append(bytes(data)))
        await client.write_gatt_char(control, encode(Hello(), 0), response=False)
        await client.write_gatt_char(control, encode(Hello(), 1), response=True)

        def answers() -> list[bytes]:  # the periodic STATUS (0x84) may come in between
            return [frame for frame in got if frame[2] != 0x84]

        for _ in range(200):
            if len(answers()) >= 2:
                break
            await asyncio.sleep(0.005)
        assert [frame[2] for frame in answers()[:2]] == [0x81, 0x81]  # two CAPABILITIES
        assert await client.read_gatt_char("00002a19-0000-1000-8000-00805f9b34fb") == bytearray(
            [100]
        )
        # Link loss reaches bleak's disconnected callback, with the BleakClient, exactly once.
        rig.massager.drop_link()
        for _ in range(200):
            if disconnected:
                break
            await asyncio.sleep(0.005)
        assert disconnected == [client]
        assert not client.is_connected
        with pytest.raises(BleakError):
            await client.write_gatt_char(control, encode(Hello(), 2), response=True)
        await asyncio.sleep(0.05)
        assert disconnected == [client]
    finally:
        await client.disconnect()


async def test_requested_disconnect_is_clean(rig: Rig) -> None:
    client = rig.bleak_client()
    await client.connect()
    assert client.is_connected
    await client.disconnect()
    assert not client.is_connected
    await client.connect()  # reusable
    await client.disconnect()
