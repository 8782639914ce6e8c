"""Each way a connection fails gives its one line of advice, through the simulator's tiers.

Tier 1 (in-memory bleak backend) expresses every FaultPlan.connect_fault with the words the
real stacks use. Tier 2 (bumble virtual radio, a real HCI/L2CAP/ATT stack) expresses absence
(the connect times out, as on air), "refuse" and "no_slots" (LE Connection Complete with HCI
status 0x0F / 0x09) and "vanish_mid_connect" (supervision timeout at the first ATT request). It
cannot express the pairing faults: the bumble bleak backend does not pair, so there is nothing
for a device's pairing demand to act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import bleak_retry_connector
import pytest
from bleak.exc import BleakError

from firmware_bridge.compose import Stack, open_hardware
from firmware_bridge.devices import by_id
from firmware_bridge.devices.simple import SimpleWriteTransport
from firmware_bridge.discovery import SeveralMassagersError, Sighting
from firmware_bridge.errors import DeviceConnectionError, DeviceNotFoundError, MassagerError
from firmware_bridge.transport import BleakTransport
from firmware_bridge.transport.bleak_transport import MIN_CONNECT_TIMEOUT_S, connect_error
from firmware_bridge.transport.bumble_backend import BumbleBleakClient
from sim.firmware import CONNECT_FAULTS, FaultPlan
from sim.hosts import InMemoryBleakClient, InMemoryBleakScanner, SimulatedMassager, VirtualAir
from sim.hosts.virtual import VirtualRadio

ADVICE = {
    "refuse": "the massager refused the connection; it may accept only its own phone or app",
    "no_slots": "the Bluetooth adapter has no free connection slot; disconnect other",
    "pairing_required": "pairing is needed or was refused; put the massager in pairing mode",
    "pairing_refused": "pairing is needed or was refused; put the massager in pairing mode",
    "vanish_mid_connect": "the massager went away while connecting (out of range or switched",
}
ABSENT = "not found: it is off, out of range, or connected to a phone or another app"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """bleak-retry-connector waits up to 4 s between attempts for a real adapter to settle."""

    async def no_wait(device: object, min_wait_time: float) -> None:
        return None

    monkeypatch.setattr(bleak_retry_connector, "wait_for_disconnect", no_wait)


@pytest.fixture
async def massager(request: pytest.FixtureRequest) -> AsyncIterator[SimulatedMassager]:
    """A simulated massager; an indirect parameter is its FaultPlan.connect_fault."""
    fault = getattr(request, "param", None)
    massager = SimulatedMassager(plan=FaultPlan(connect_fault=fault))
    yield massager
    await massager.close()


def transport(massager: SimulatedMassager, *, pair: bool = False) -> BleakTransport:
    return BleakTransport(
        VirtualAir([massager]).device(massager.address), backend=InMemoryBleakClient, pair=pair
    )


def test_every_connect_fault_has_its_advice() -> None:
    assert set(ADVICE) == CONNECT_FAULTS


def test_a_connection_attempt_may_take_at_least_ten_seconds() -> None:
    """BlueZ resolves services slowly: the connector's per-attempt timeout must allow it."""
    assert bleak_retry_connector.BLEAK_TIMEOUT >= MIN_CONNECT_TIMEOUT_S >= 10.0


@pytest.mark.parametrize("massager", sorted(CONNECT_FAULTS), indirect=True)
async def test_tier_1_each_connect_fault_gives_its_line_of_advice(
    massager: SimulatedMassager,
) -> None:
    fault = str(massager.plan.connect_fault)
    link = transport(massager)
    with pytest.raises(DeviceConnectionError) as caught:
        await link.connect()
    message = str(caught.value)
    assert message.startswith(f"{massager.name}: {ADVICE[fault]}")
    assert "\n" not in message
    assert not link.is_connected
    assert not massager.connected


async def test_tier_1_an_absent_massager_is_not_found(massager: SimulatedMassager) -> None:
    massager.reachable = False
    with pytest.raises(DeviceNotFoundError) as caught:
        await transport(massager).connect()
    assert str(caught.value).startswith(f"{massager.name}: {ABSENT}")


@pytest.mark.parametrize("massager", ["pairing_required"], indirect=True)
async def test_tier_1_pairing_makes_a_pairing_device_connect(massager: SimulatedMassager) -> None:
    link = transport(massager, pair=True)
    await link.connect()
    assert link.is_connected
    await link.disconnect()
    assert not massager.connected


@pytest.mark.parametrize("massager", ["pairing_required"], indirect=True)
async def test_the_transport_takes_pair_from_a_description_s_backend_kwargs(
    massager: SimulatedMassager,
) -> None:
    """devices.transport_for passes `pair=True` in backend_kwargs: not twice to the connector."""
    device = VirtualAir([massager]).device(massager.address)
    link = BleakTransport(device, backend=InMemoryBleakClient, backend_kwargs={"pair": True})
    await link.connect()
    assert link.is_connected
    await link.disconnect()


def chained(outer: Exception, words: str) -> Exception:
    """`outer` raised from a BleakError saying `words`, as bleak-retry-connector raises."""
    outer.__cause__ = BleakError(words)
    return outer


@pytest.mark.parametrize(
    ("words", "kind"),
    [
        ("[org.bluez.Error.Failed] le-connection-abort-by-local", "no_slots"),
        ("ESP_GATT_CONN_FAIL_ESTABLISH: out of connection slots", "no_slots"),
        ("CONNECTION_LIMIT_EXCEEDED_ERROR", "no_slots"),
        ("Could not connect: Access Denied", "pairing_refused"),
        ("[org.bluez.Error.AuthenticationFailed] Authentication Failed", "pairing_refused"),
        ("CONNECTION_REJECTED_DUE_TO_UNACCEPTABLE_BD_ADDR", "refuse"),
        ("failed to discover services, device disconnected", "vanish_mid_connect"),
        ("CONNECTION_FAILED_TO_BE_ESTABLISHED", "vanish_mid_connect"),
    ],
)
def test_the_stacks_words_are_sorted_into_advice(words: str, kind: str) -> None:
    """The strings BlueZ, WinRT, ESPHome and bumble use (bleak-retry-connector knows some)."""
    error = connect_error(
        "F", chained(bleak_retry_connector.BleakConnectionError("F - A: Failed after 3"), words)
    )
    assert str(error).startswith(f"F: {ADVICE[kind]}")


def test_the_connector_s_own_advice_does_not_mislead() -> None:
    """Its 'The device disappeared' advice on a plain not-found is not 'went away'."""
    said = "F - A: Failed to connect after 9 attempt(s): The device disappeared; Try ..."
    error = connect_error(
        "F", chained(bleak_retry_connector.BleakNotFoundError(said), "device A not found")
    )
    assert isinstance(error, DeviceNotFoundError)
    assert str(error).startswith(f"F: {ABSENT}")


TIER_2_FAULTS = ("refuse", "no_slots", "vanish_mid_connect")


@pytest.mark.parametrize("massager", TIER_2_FAULTS, indirect=True)
async def test_tier_2_connect_faults_give_the_same_line_of_advice(
    massager: SimulatedMassager,
) -> None:
    radio = VirtualRadio()
    try:
        central = await radio.add_central()
        await radio.add_peripheral(massager)
        device = VirtualAir([massager]).device(massager.address)
        link = BleakTransport(
            device, backend=BumbleBleakClient, backend_kwargs={"central": central}
        )
        with pytest.raises(DeviceConnectionError) as caught:
            await link.connect()
        fault = str(massager.plan.connect_fault)
        assert str(caught.value).startswith(f"{massager.name}: {ADVICE[fault]}")
        assert not link.is_connected
    finally:
        await radio.close()


async def test_tier_2_an_unfaulted_massager_still_connects() -> None:
    """The fault hook leaves ordinary connections alone."""
    radio = VirtualRadio()
    massager = SimulatedMassager()
    try:
        central = await radio.add_central()
        await radio.add_peripheral(massager)
        device = VirtualAir([massager]).device(massager.address)
        link = BleakTransport(
            device, backend=BumbleBleakClient, backend_kwargs={"central": central}
        )
        await link.connect()
        assert link.is_connected
        await link.disconnect()
    finally:
        await radio.close()
        await massager.close()


async def test_tier_2_an_out_of_range_massager_is_not_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tier 2 expresses absence as on air: the connect times out (then "not found")."""
    monkeypatch.setattr(bleak_retry_connector, "BLEAK_TIMEOUT", 0.3)  # on air: 20 s per attempt
    radio = VirtualRadio()
    massager = SimulatedMassager()
    try:
        central = await radio.add_central()
        host = await radio.add_peripheral(massager)
        radio.out_of_range(host)
        device = VirtualAir([massager]).device(massager.address)
        link = BleakTransport(
            device, backend=BumbleBleakClient, backend_kwargs={"central": central}
        )
        with pytest.raises(DeviceNotFoundError) as caught:
            await link.connect()
        assert str(caught.value).startswith(f"{massager.name}: {ABSENT}")
    finally:
        await radio.close()
        await massager.close()


# -- choosing the massager (open_hardware over the in-memory stack) ----------------------------


async def test_the_only_massager_in_range_is_used_with_its_scan_rssi() -> None:
    massager = SimulatedMassager()
    stack = Stack(InMemoryBleakScanner, InMemoryBleakClient, {"air": VirtualAir([massager])})
    chosen: list[Sighting] = []
    try:
        async with open_hardware(scan_timeout=2.0, stack=stack, on_chosen=chosen.append) as link:
            assert link.device.address == massager.address
            assert link.rssi == -55
            await link.connect()
            assert massager.connected
        assert not massager.connected  # disconnected after the session
        assert [s.address for s in chosen] == [massager.address]
    finally:
        await massager.close()


async def test_several_massagers_ask_or_refuse_and_a_remembered_one_wins() -> None:
    one, two = SimulatedMassager(name="Foot-A"), SimulatedMassager(name="Foot-B")
    stack = Stack(InMemoryBleakScanner, InMemoryBleakClient, {"air": VirtualAir([one, two])})
    try:
        with pytest.raises(SeveralMassagersError) as caught:
            async with open_hardware(scan_timeout=2.0, stack=stack):
                pytest.fail("chose without asking")
        lines = str(caught.value).splitlines()
        assert "pass --address" in lines[0]
        assert sorted(line.split()[0] for line in lines[1:]) == sorted([one.address, two.address])

        async def second(candidates: list[Sighting]) -> Sighting:
            return next(s for s in candidates if s.name == "Foot-B")

        async with open_hardware(scan_timeout=2.0, stack=stack, ask=second) as link:
            assert link.device.address == two.address
        async with open_hardware(scan_timeout=2.0, stack=stack, preferred=[one.address]) as link:
            assert link.device.address == one.address
    finally:
        await one.close()
        await two.close()


async def test_an_address_nobody_advertises_is_not_found() -> None:
    stack = Stack(InMemoryBleakScanner, InMemoryBleakClient, {"air": VirtualAir([])})
    with pytest.raises(MassagerError, match=r"no device AA:BB.* found within 0.5 s"):
        async with open_hardware(address="AA:BB:CC:DD:EE:FF", scan_timeout=0.5, stack=stack):
            pytest.fail("found nobody")


async def test_a_device_only_a_description_matches_is_never_picked_on_its_own() -> None:
    """A description matches by what a device advertises: another gadget may look the same.
    Alone in range it is offered (asked, or --address), never driven unasked."""
    described = SimulatedMassager(description=by_id("single-byte"))
    stack = Stack(InMemoryBleakScanner, InMemoryBleakClient, {"air": VirtualAir([described])})
    try:
        with pytest.raises(SeveralMassagersError, match="pass --address") as caught:
            async with open_hardware(scan_timeout=1.0, stack=stack):
                pytest.fail("drove a described device nobody chose")
        assert described.address in str(caught.value)

        async def yes(candidates: list[Sighting]) -> Sighting:
            return candidates[0]

        async with open_hardware(scan_timeout=1.0, stack=stack, ask=yes) as link:
            assert isinstance(link, SimpleWriteTransport)
        async with open_hardware(address=described.address, scan_timeout=1.0, stack=stack) as link:
            assert isinstance(link, SimpleWriteTransport)
    finally:
        await described.close()
