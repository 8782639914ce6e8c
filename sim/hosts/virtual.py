"""Tier 2's virtual radio: bumble controllers on an in-process link, with latency and range.

Centrals and simulated massagers get their own bumble `Device` + virtual controller on one
`LatencyLink`, so everything between bleak's front end and the firmware model is a real BLE stack
(HCI, L2CAP, ATT, GATT) with no hardware and no root.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bumble import core, hci, ll
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from sim.firmware import LINK_LOSS_REASON
from sim.hosts.bumble_host import BumbleMassagerHost
from sim.hosts.runtime import SimulatedMassager

_LOGGER = logging.getLogger(__name__)

DISCONNECT_WAIT_S = 1.0  # close(): how long to wait for both ends to report a disconnection
TIMER_TOLERANCE_S = 0.0005  # deliver packets due within this of now in one go (timer granularity)
SCANNABLE_PROPERTY = 0x02  # bit of an advertising set's advertising_event_properties


class FixedController(Controller):
    """bumble's virtual controller with two defects of bumble 0.0.236 fixed.

    LE Create Connection Cancel: bumble answers SUCCESS but keeps the pending connection, so a
    connect that timed out never completes and every later connect is refused
    (COMMAND_DISALLOWED). The spec (Vol 4, Part E, 7.8.13) wants Command Complete, then LE
    Connection Complete with status UNKNOWN_CONNECTION_IDENTIFIER (0x02); this sends that.

    Scan responses: bumble reports the advertising data a second time as the "scan response";
    this reports the advertiser's real scan response data (where a long name has to go).
    """

    _advertiser: hci.Address | None = None  # set while reporting one advertising PDU
    # The radio's answer to "what connect fault has the massager at this address?" (a central's
    # controller asks it when it is about to connect; sim.firmware.FaultPlan.connect_fault).
    connect_fault: Callable[[hci.Address], str | None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._vanishing: set[hci.Address] = set()  # links lost at the central's first request

    def create_le_connection(self, peer_address: hci.Address) -> None:
        """Connect, unless the massager's FaultPlan says the attempt fails (tier-2 faults).

        "refuse": LE Connection Complete with status 0x0F (the peer accepts only its own phone);
        "no_slots": status 0x09 Connection Limit Exceeded (this controller holds too many links);
        "vanish_mid_connect": the link comes up, then its supervision timer expires (0x08) on
        both ends before the services are discovered. The pairing faults are tier 1's: the
        bumble backend does not pair.
        """
        fault = self.connect_fault(peer_address) if self.connect_fault else None
        pending = self.pending_le_connection
        status = {
            "refuse": hci.HCI_ErrorCode.CONNECTION_REJECTED_DUE_TO_UNACCEPTABLE_BD_ADDR_ERROR,
            "no_slots": hci.HCI_ErrorCode.CONNECTION_LIMIT_EXCEEDED_ERROR,
        }.get(fault or "")
        if status is None or pending is None:
            super().create_le_connection(peer_address)
            if fault == "vanish_mid_connect":
                self._vanishing.add(peer_address)
            return
        self.pending_le_connection = None
        self.send_hci_packet(
            hci.HCI_LE_Connection_Complete_Event(
                status=status,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address_type,
                peer_address=pending.peer_address,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
        )

    def on_hci_acl_data_packet(self, packet: hci.HCI_AclDataPacket) -> None:
        """Host data out; for a vanishing peer it is lost and the link times out instead."""
        connection = self.find_connection_by_handle(packet.connection_handle)
        peer = connection.peer_address if connection is not None else None
        if peer is not None and peer in self._vanishing:
            self._vanishing.discard(peer)
            asyncio.get_running_loop().call_soon(self._vanish, peer)
            return
        super().on_hci_acl_data_packet(packet)

    def _vanish(self, peer_address: hci.Address) -> None:
        """The link to `peer_address` is lost on both ends (supervision timeout)."""
        peer = self.link.find_le_controller(peer_address) if self.link else None
        own = {self.random_address, self.public_address}
        if peer is not None:
            for connection in list(peer.le_connections.values()):
                if connection.peer_address in own:
                    peer.on_le_disconnected(connection, LINK_LOSS_REASON)
        own_end = self.le_connections.get(peer_address)
        if own_end is not None:
            self.on_le_disconnected(own_end, LINK_LOSS_REASON)

    def on_hci_le_create_connection_cancel_command(
        self, _command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # The caller queues the Command Complete after we return; one more loop turn keeps the
        # spec's order (Command Complete, then Connection Complete) at the host.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

    def on_advertising_pdu(self, pdu: ll.AdvInd | ll.AdvExtInd) -> None:
        self._advertiser = pdu.advertiser_address
        try:
            super().on_advertising_pdu(pdu)
        finally:
            self._advertiser = None

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if self._advertiser is not None and isinstance(
            packet, hci.HCI_LE_Extended_Advertising_Report_Event
        ):
            packet = hci.HCI_LE_Extended_Advertising_Report_Event(
                [self._as_advertised(report) for report in packet.reports]
            )
        super().send_hci_packet(packet)

    def _as_advertised(
        self, report: hci.HCI_LE_Extended_Advertising_Report_Event.Report
    ) -> hci.HCI_LE_Extended_Advertising_Report_Event.Report:
        """The report as a real controller makes it: scannable flag, real scan response data."""
        event_type = hci.HCI_LE_Extended_Advertising_Report_Event.EventType
        advertiser = self.link.find_le_controller(report.address) if self.link else None
        adv_set = next(
            (
                adv_set
                for adv_set in (advertiser.advertising_sets.values() if advertiser else ())
                if adv_set.enabled and adv_set.address == report.address
            ),
            None,
        )
        if adv_set is None or adv_set.parameters is None:
            return report
        if report.event_type & event_type.SCAN_RESPONSE:
            return dataclasses.replace(report, data=bytes(adv_set.scan_response_data))
        properties = int(adv_set.parameters.advertising_event_properties)
        if properties & SCANNABLE_PROPERTY:
            # A host waits for the scan response of a scannable advertisement and reports both
            # merged, so the first sighting already carries the full name.
            return dataclasses.replace(
                report, event_type=report.event_type | event_type.SCANNABLE_ADVERTISING
            )
        return report


@dataclass
class _Pipe:
    """One direction between two controllers: a FIFO drained by a single timer."""

    queue: collections.deque[tuple[float, Callable[[], None]]] = field(
        default_factory=collections.deque
    )
    timer: asyncio.TimerHandle | None = None
    last_due: float = 0.0


class LatencyLink(LocalLink):
    """A `LocalLink` with one-way latency and jitter on connection data, and a notion of range.

    Each direction is a FIFO, like a real link layer (reliable, in order): a packet is never
    delivered before one sent earlier the same way, and LL control PDUs (LL_TERMINATE_IND) share
    the FIFO so a disconnect cannot overtake data. One timer per direction, not one per packet:
    asyncio's timer heap does not keep equal deadlines in order. Advertising is not delayed.
    Controllers in `out_of_range` neither hear nor are heard.
    """

    def __init__(self, *, latency_s: float = 0.0, jitter_s: float = 0.0, seed: int = 0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # bumble left this one unannotated
        if latency_s < 0 or jitter_s < 0:
            raise ValueError("latency_s and jitter_s must be >= 0")
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.out_of_range: set[Controller] = set()
        self._rng = random.Random(seed)
        self._pipes: dict[tuple[Controller, Controller], _Pipe] = {}
        self._epochs: collections.Counter[frozenset[Controller]] = collections.Counter()

    def drop_in_flight(self, a: Controller, b: Controller) -> None:
        """Lose every packet between `a` and `b` still on the air (the link just died)."""
        self._epochs[frozenset((a, b))] += 1

    def close(self) -> None:
        """Cancel delivery timers (the radio is shutting down)."""
        for pipe in self._pipes.values():
            if pipe.timer is not None:
                pipe.timer.cancel()
            pipe.queue.clear()
        self._pipes.clear()

    # -- LocalLink overrides ------------------------------------------------------------

    def send_advertising_pdu(
        self, sender_controller: Controller, packet: ll.AdvertisingPdu
    ) -> None:
        if sender_controller in self.out_of_range:
            return
        loop = asyncio.get_running_loop()
        for controller in self.controllers:
            if controller is not sender_controller and controller not in self.out_of_range:
                loop.call_soon(controller.on_ll_advertising_pdu, packet)

    def send_acl_data(
        self,
        sender_controller: Controller,
        destination_address: hci.Address,
        transport: core.PhysicalTransport,
        data: bytes,
    ) -> None:
        if transport == core.PhysicalTransport.LE:
            destination = self.find_le_controller(destination_address)
            source_address = sender_controller.random_address
        else:
            destination = self.find_classic_controller(destination_address)
            source_address = sender_controller.public_address
        if destination is None:
            return
        connections = (
            destination.le_connections
            if transport == core.PhysicalTransport.LE
            else destination.classic_connections
        )

        def deliver() -> None:
            # Data still on the air when the receiver ended the link is lost, as on a real radio
            # (bumble would log a warning per packet).
            if source_address in connections:
                destination.on_link_acl_data(source_address, transport, data)

        self._send(sender_controller, destination, deliver)

    def send_ll_control_pdu(
        self, sender_address: hci.Address, receiver_address: hci.Address, packet: ll.ControlPdu
    ) -> None:
        sender = self.find_le_controller(sender_address)
        receiver = self.find_le_controller(receiver_address)
        if sender is None or receiver is None:
            # bumble raises here; a real radio just talks to nobody (the peer walked away)
            _LOGGER.debug("LL control PDU to %s: nobody there", receiver_address)
            return
        self._send(sender, receiver, lambda: receiver.on_ll_control_pdu(sender_address, packet))

    # -- internals ------------------------------------------------------------------------

    def _send(
        self, source: Controller, destination: Controller, deliver: Callable[[], None]
    ) -> None:
        if source in self.out_of_range or destination in self.out_of_range:
            return
        pair = frozenset((source, destination))
        epoch = self._epochs[pair]

        def guarded() -> None:
            if (
                self._epochs[pair] == epoch
                and destination in self.controllers
                and destination not in self.out_of_range
            ):
                deliver()

        loop = asyncio.get_running_loop()
        if self.latency_s <= 0 and self.jitter_s <= 0:
            loop.call_soon(guarded)  # call_soon is FIFO: order holds without a pipe
            return
        pipe = self._pipes.setdefault((source, destination), _Pipe())
        delay = self.latency_s + (self._rng.uniform(0, self.jitter_s) if self.jitter_s else 0.0)
        due = max(loop.time() + delay, pipe.last_due)  # FIFO: never overtake an earlier packet
        pipe.last_due = due
        pipe.queue.append((due, guarded))
        if pipe.timer is None:
            pipe.timer = loop.call_at(due, self._drain, pipe)

    def _drain(self, pipe: _Pipe) -> None:
        loop = asyncio.get_running_loop()
        pipe.timer = None
        now = loop.time() + TIMER_TOLERANCE_S
        while pipe.queue and pipe.queue[0][0] <= now:
            _, deliver = pipe.queue.popleft()
            deliver()
        if pipe.queue:
            pipe.timer = loop.call_at(pipe.queue[0][0], self._drain, pipe)


class VirtualRadio:
    """Centrals and simulated massagers sharing one virtual BLE link in this process."""

    def __init__(self, *, latency_s: float = 0.0, jitter_s: float = 0.0, seed: int = 0) -> None:
        self.link = LatencyLink(latency_s=latency_s, jitter_s=jitter_s, seed=seed)
        self.centrals: list[Device] = []
        self.hosts: list[BumbleMassagerHost] = []
        self._controllers: dict[Device, Controller] = {}
        self._started: list[SimulatedMassager] = []  # massagers whose timers we started
        self._count = 0

    async def add_central(self) -> Device:
        """A powered-on bumble central (pass it to the bumble bleak backends as `central=`)."""
        index = self._next_index()
        device = self._device(f"central-{index}", hci.Address(f"C0:00:00:00:00:{index:02X}"))
        await device.power_on()
        self.centrals.append(device)
        return device

    async def add_peripheral(self, massager: SimulatedMassager) -> BumbleMassagerHost:
        """Put `massager` on the air: GATT server up, advertising every 20 ms, timers running."""
        index = self._next_index()
        device = self._device(massager.name, self._peripheral_address(massager, index))
        await device.power_on()
        host = BumbleMassagerHost(
            device, massager, link_loss=lambda: self._supervision_timeout(device)
        )
        if not massager.running:
            await massager.start()
            self._started.append(massager)
        await host.start()
        self.hosts.append(host)
        return host

    def out_of_range(self, host: BumbleMassagerHost) -> None:
        """The massager walks away: supervision timeout (0x08) on both ends, then silence."""
        controller = self._controllers[host.device]
        self._supervision_timeout(host.device)
        self.link.out_of_range.add(controller)

    def back_in_range(self, host: BumbleMassagerHost) -> None:
        """The massager is reachable again (it has kept advertising all along)."""
        self.link.out_of_range.discard(self._controllers[host.device])

    async def close(self) -> None:
        """Disconnect everything, wait for both ends to see it, power off, stop timers."""
        self.link.out_of_range.clear()
        devices = list(self._controllers)
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[Any]] = []
        for device in devices:
            for connection in list(device.connections.values()):
                done: asyncio.Future[Any] = loop.create_future()
                connection.once(Connection.EVENT_DISCONNECTION, _resolver(done))
                waits.append(done)
        for central in self.centrals:
            for connection in list(central.connections.values()):
                # Bounded: bumble's disconnect() waits forever if the link ended meanwhile.
                with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error, TimeoutError):
                    async with asyncio.timeout(DISCONNECT_WAIT_S):
                        await connection.disconnect()
        if waits:
            # power_off() would forget connections whose Disconnection Complete is still on its
            # way, and bumble then logs "Unknown disconnection handle".
            await asyncio.wait(waits, timeout=DISCONNECT_WAIT_S)
        for host in self.hosts:
            await host.stop()
        for device in devices:
            if device.is_scanning:
                await device.stop_scanning()
            await device.power_off()
        self.link.close()
        for massager in self._started:
            await massager.close()
        self._started.clear()
        self.hosts.clear()
        self.centrals.clear()
        self._controllers.clear()

    # -- internals ------------------------------------------------------------------------

    def _next_index(self) -> int:
        self._count += 1
        return self._count

    def _device(self, name: str, address: hci.Address) -> Device:
        controller = FixedController(
            name,
            link=self.link,
            public_address=hci.Address(f"A0:00:00:00:00:{self._count:02X}"),
        )
        controller.connect_fault = self._connect_fault
        device = Device(
            name=name, address=address, host=Host(controller, AsyncPipeSink(controller))
        )
        self._controllers[device] = controller
        return device

    def _connect_fault(self, address: hci.Address) -> str | None:
        """The FaultPlan.connect_fault of the massager advertising at `address` (or None)."""
        for host in self.hosts:
            if address in (host.device.random_address, host.device.public_address):
                return host.massager.plan.connect_fault
        return None

    def _peripheral_address(self, massager: SimulatedMassager, index: int) -> hci.Address:
        """The massager's own address if it is a free static random one, else one per index."""
        taken = {device.random_address for device in self._controllers}
        try:
            address = hci.Address(massager.address)
        except (ValueError, core.InvalidArgumentError):
            address = None
        if address is None or not address.is_static or address in taken:
            address = hci.Address(f"F0:0D:00:00:01:{index:02X}")
        return address

    def _supervision_timeout(self, device: Device) -> None:
        """Tear down `device`'s LE links as if the supervision timer expired on both ends."""
        controller = self._controllers[device]
        own = {controller.random_address, controller.public_address}
        for connection in list(controller.le_connections.values()):
            peer = self.link.find_le_controller(connection.peer_address)
            if peer is not None:
                self.link.drop_in_flight(controller, peer)
                for peer_connection in list(peer.le_connections.values()):
                    if peer_connection.peer_address in own:
                        peer.on_le_disconnected(peer_connection, LINK_LOSS_REASON)
            controller.on_le_disconnected(connection, LINK_LOSS_REASON)


def _resolver(future: asyncio.Future[Any]) -> Callable[..., None]:
    def resolve(*args: Any) -> None:
        if not future.done():
            future.set_result(args)

    return resolve
