"""The simulator as a separate device: a virtual link whose other end is a TCP HCI socket.

`serve_linked` is what `python -m bumble.apps.controllers tcp-server:P1 tcp-server:P2` does for
two processes, with the simulated massager hosted inside: a virtual BLE link in this process,
the massager's controller on it, and a TCP server on 127.0.0.1 where each client gets its own
virtual controller on the same link. A controller process connects with
`massager run PROFILE --hci tcp-client:127.0.0.1:PORT` and sees an ordinary HCI controller.

A client that goes away (killed, or its socket closed) is what a central walking out of range
is on a real radio: its links end with a supervision timeout (0x08) at the massager, whose
firmware keeps running (so its watchdog zeroes the motors), and advertising starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

from bumble import core, hci
from bumble.controller import Controller
from bumble.transport.common import PacketParser

from sim.firmware import LINK_LOSS_REASON
from sim.hosts.runtime import SimulatedMassager
from sim.hosts.virtual import FixedController, LatencyLink, VirtualRadio

_LOGGER = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"  # never reachable from another machine: a USB dongle is for that


class _HciClient(asyncio.Protocol):
    """One TCP client: an HCI host talking to its own virtual controller on the link."""

    def __init__(self, server: ControllerServer, public_address: hci.Address) -> None:
        self._server = server
        self._public_address = public_address
        self._transport: asyncio.Transport | None = None
        self._parser = PacketParser()
        self.controller: Controller | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # create_server gives a stream one
            raise TypeError(f"expected a stream transport, got {transport!r}")
        self._transport = transport
        self.controller = FixedController(
            f"tcp-{self._public_address}",
            host_sink=self,
            link=self._server.link,
            public_address=self._public_address,
        )
        self._parser.set_packet_sink(self.controller)
        self._server.clients.add(self)
        _LOGGER.info("HCI client %s connected", transport.get_extra_info("peername"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except core.InvalidPacketError:
            _LOGGER.warning("HCI client sent an invalid packet; closing its connection")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        _LOGGER.info("HCI client gone (%s)", exc or "closed")
        self._server.clients.discard(self)
        controller, self.controller = self.controller, None
        self._transport = None
        if controller is not None:
            self._server.lose(controller)

    # -- the controller's host sink ----------------------------------------------------------

    def on_packet(self, packet: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(packet)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class ControllerServer:
    """A TCP HCI endpoint on `link`: every client gets a fresh virtual controller."""

    def __init__(self, link: LatencyLink, *, host: str = LOOPBACK, port: int = 0) -> None:
        self.link = link
        self.host = host
        self.port = port
        self.clients: set[_HciClient] = set()
        self._server: asyncio.Server | None = None
        self._addresses = (
            hci.Address(f"B0:00:00:00:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}")
            for n in itertools.count(1)
        )

    async def start(self) -> int:
        """Listen; returns the port (the one the OS picked if `port` was 0). OSError if taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _HciClient(self, next(self._addresses)), self.host, self.port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop listening and drop every client (each one's links end as lost)."""
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def lose(self, controller: Controller) -> None:
        """`controller`'s host is gone: its peers see a supervision timeout, then it leaves."""
        own = {controller.random_address, controller.public_address}
        for connection in list(controller.le_connections.values()):
            peer = self.link.find_le_controller(connection.peer_address)
            if peer is None:
                continue
            self.link.drop_in_flight(controller, peer)
            for peer_connection in list(peer.le_connections.values()):
                if peer_connection.peer_address in own:
                    peer.on_le_disconnected(peer_connection, LINK_LOSS_REASON)
        controller.host = None  # nothing more goes to the closed socket
        with contextlib.suppress(KeyError):
            self.link.remove_controller(controller)


async def serve_linked(
    massager: SimulatedMassager, *, port: int = 0, on_listening: Callable[[int], None]
) -> None:
    """Serve `massager` on a virtual link with a TCP HCI endpoint on 127.0.0.1:`port` (0: any
    free port) until cancelled; `on_listening(port)` is called once clients can connect."""
    radio = VirtualRadio()
    server = ControllerServer(radio.link, port=port)
    try:
        await radio.add_peripheral(massager)
        on_listening(await server.start())
        await asyncio.Event().wait()  # serve until cancelled
    finally:
        # Shielded so a cancelled serve still disconnects (the central hears "terminated").
        await asyncio.shield(_shutdown(radio, server))


async def _shutdown(radio: VirtualRadio, server: ControllerServer) -> None:
    await radio.close()  # the massager ends its link first: the central is told, not left
    await server.close()


__all__ = ["LOOPBACK", "ControllerServer", "serve_linked"]
