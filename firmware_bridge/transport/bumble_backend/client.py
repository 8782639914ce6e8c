"""The bleak client backend over a bumble central."""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble import att, core, hci
from bumble.device import Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy

from firmware_bridge.transport.bumble_backend.convert import (
    _CONNECT_LOCKS,
    _T,
    ATT_HEADER,
    CANCEL_GRACE_S,
    DEFAULT_MTU,
    DEFAULT_SERVICES,
    DISCONNECT_TIMEOUT_S,
    OPERATION_TIMEOUT_S,
    BumbleDeviceDetails,
    _describe,
    _outcome,
    _parse_address,
    _properties,
    _uuid,
    _uuid_str,
)

_LOGGER = logging.getLogger(__name__)


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend whose radio is a bumble `Device` acting as central."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        central: Device | None = None,
        mtu: int = DEFAULT_MTU,
        services: Iterable[str] | None = None,
        operation_timeout: float = OPERATION_TIMEOUT_S,
        **kwargs: Any,  # bleak passes bluez/winrt; the retry connector passes pair and more
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        details = getattr(address_or_ble_device, "details", None)
        if isinstance(details, BumbleDeviceDetails):
            central = central or details.central
            self._peer_address = details.address
        else:
            self._peer_address = _parse_address(self.address)
        if central is None:
            raise ValueError("BumbleBleakClient needs central= (a powered-on bumble Device)")
        self._central = central
        self._device_name = getattr(address_or_ble_device, "name", None)
        self._wanted_mtu = mtu
        self._mtu: int = att.ATT_DEFAULT_MTU
        self._service_uuids = tuple(services) if services else DEFAULT_SERVICES
        self._operation_timeout = operation_timeout
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._lost: asyncio.Future[int] | None = None  # resolves with the HCI reason
        self._connected = False  # set once services are known: only then is a loss reported
        self._closing = False  # disconnect() was asked for: no disconnected callback
        self._terminating: Connection | None = None  # the link we sent HCI Disconnect for
        self._operations: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._characteristics: dict[int, CharacteristicProxy[bytes]] = {}
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self._device_name or self.address

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connected

    # -- connection ---------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange MTU, discover the services; bleak's `timeout=` bounds the connect."""
        if self._connected:
            return
        if pair:
            _LOGGER.debug("%s: pairing not supported by the bumble backend; ignored", self.address)
        timeout = float(kwargs.get("timeout", self._timeout))
        self._closing = False
        lock = _CONNECT_LOCKS.setdefault(self._central, asyncio.Lock())
        try:
            async with lock:  # a controller creates one LE connection at a time
                connection = await self._connect_le(timeout)
        except (TimeoutError, core.TimeoutError) as exc:
            raise TimeoutError(
                f"{self.address}: no connection within {timeout:g} s; is it advertising and in "
                "range?"
            ) from exc
        except (core.BaseBumbleError, hci.HCI_Error) as exc:
            raise BleakError(f"{self.address}: connection failed: {_describe(exc)}") from exc
        self._connection = connection
        self._lost = asyncio.get_running_loop().create_future()
        connection.on(
            Connection.EVENT_DISCONNECTION,
            lambda reason: self._on_disconnection(connection, reason),
        )
        self._peer = Peer(connection)
        try:
            self._mtu = await self._run("MTU exchange", self._peer.request_mtu(self._wanted_mtu))
            self.services = await self._discover(self._peer)
        except BaseException:
            self._closing = True
            await asyncio.shield(self._disconnect(connection))
            raise
        self._connected = True
        _LOGGER.debug("%s: connected, MTU %d", self.address, self._mtu)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        self._closing = True
        # Shielded: a cancelled caller must not leave a half-open link behind.
        await asyncio.shield(self._disconnect(connection))

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        _LOGGER.debug("%s: pairing not supported by the bumble backend; ignored", self.address)

    async def unpair(self) -> None:
        _LOGGER.debug("%s: nothing to unpair", self.address)

    # -- GATT ------------------------------------------------------------------------------

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        what = f"read of {characteristic.uuid}"
        return bytearray(await self._run(what, peer.read_value(characteristic.handle)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        peer = self._require_peer()
        what = f"read of descriptor {descriptor.handle}"
        return bytearray(await self._run(what, peer.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        peer = self._require_peer()
        payload = bytes(data)
        what = f"write to {characteristic.uuid}"
        if response:
            await self._run(what, peer.write_value(characteristic.handle, payload, True))
            return
        if len(payload) > self._mtu - ATT_HEADER:
            raise BleakError(
                f"{self.address}: {len(payload)}-byte write without response exceeds "
                f"{self._mtu - ATT_HEADER} (MTU {self._mtu})"
            )
        # A write command has no response to wait for: no task, no timeout, just the send.
        try:
            await peer.write_value(characteristic.handle, payload, False)
        except (core.BaseBumbleError, hci.HCI_Error) as exc:
            raise BleakError(f"{self.address}: {what} failed: {_describe(exc)}") from exc

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        peer = self._require_peer()
        payload = bytes(data)
        what = f"write to descriptor {descriptor.handle}"
        await self._run(what, peer.write_value(descriptor.handle, payload, True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require_peer()
        proxy = self._characteristics.get(characteristic.handle)
        if proxy is None:
            raise BleakError(f"{self.address}: unknown characteristic {characteristic.uuid}")
        await self.stop_notify(characteristic)  # a second start_notify replaces the callback

        def on_value(value: bytes) -> None:
            try:
                callback(bytearray(value))
            except Exception:
                # Raising into bumble would abort its packet processing for everyone.
                _LOGGER.exception("%s: notification callback failed", self.address)

        await self._run(f"subscribe to {characteristic.uuid}", peer.subscribe(proxy, on_value))
        self._subscribers[characteristic.handle] = on_value

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        subscriber = self._subscribers.pop(characteristic.handle, None)
        proxy = self._characteristics.get(characteristic.handle)
        if subscriber is None or proxy is None:
            return
        peer = self._require_peer()
        what = f"unsubscribe from {characteristic.uuid}"
        await self._run(what, peer.unsubscribe(proxy, subscriber))

    # -- internals --------------------------------------------------------------------------

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        """Discover only the services we use (`discover_services([uuid])` does not filter)."""
        collection = BleakGATTServiceCollection()
        for wanted in self._service_uuids:
            found = await self._run(f"discovery of {wanted}", peer.discover_service(_uuid(wanted)))
            for proxy in found:
                await self._run(
                    "characteristic discovery", peer.discover_characteristics(service=proxy)
                )
                service = BleakGATTService(proxy, proxy.handle, _uuid_str(proxy.uuid))
                collection.add_service(service)
                for char in proxy.characteristics:
                    await self._run("descriptor discovery", peer.discover_descriptors(char))
                    bleak_char = BleakGATTCharacteristic(
                        char,
                        char.handle,
                        _uuid_str(char.uuid),
                        _properties(int(char.properties)),
                        lambda: self._mtu - ATT_HEADER,
                        service,
                    )
                    collection.add_characteristic(bleak_char)
                    self._characteristics[char.handle] = char
                    for descriptor in char.descriptors:
                        collection.add_descriptor(
                            BleakGATTDescriptor(
                                descriptor,
                                descriptor.handle,
                                _uuid_str(descriptor.type),
                                bleak_char,
                            )
                        )
        return collection

    async def _run(self, what: str, operation: Coroutine[Any, Any, _T]) -> _T:
        """Run one ATT request, bounded; a link loss fails it at once with a BleakError."""
        lost = self._lost
        if self._connection is None or lost is None or lost.done():
            operation.close()
            raise BleakError(self._not_connected(what))
        task = asyncio.create_task(self._bounded(what, operation), name=f"{self.address} {what}")
        self._operations.add(task)
        task.add_done_callback(self._operation_done)
        # A task cancelled before its first step (a link lost in the same loop iteration) never
        # awaits `operation`: close it, or it warns "never awaited" when collected. Closing a
        # finished coroutine does nothing.
        task.add_done_callback(lambda _task: operation.close())
        # If the caller is cancelled, the request still runs to its response (bounded): an ATT
        # request abandoned mid-flight makes the next request take its late response.
        await asyncio.wait((task, lost), return_when=asyncio.FIRST_COMPLETED)
        if task.done() and not task.cancelled():
            return _outcome(self.address, what, self._operation_timeout, task)
        task.cancel()  # bumble would leave queued requests waiting 30 s on a dead link
        raise BleakError(self._not_connected(what))

    async def _bounded(self, what: str, operation: Coroutine[Any, Any, _T]) -> _T:
        try:
            async with asyncio.timeout(self._operation_timeout):
                return await operation
        except (TimeoutError, core.TimeoutError):
            # The late response would pair with the next request: the bearer is unusable now.
            self._drop(f"{what} timed out after {self._operation_timeout:g} s")
            raise

    def _operation_done(self, task: asyncio.Task[Any]) -> None:
        self._operations.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled never looks

    def _require_peer(self) -> Peer:
        lost = self._lost
        if self._peer is None or lost is None or lost.done():
            raise BleakError(self._not_connected("operation"))
        return self._peer

    def _not_connected(self, what: str) -> str:
        lost = self._lost
        if lost is not None and lost.done() and not lost.cancelled():
            reason = lost.result()
            return (
                f"{self.address}: {what} failed: disconnected (reason 0x{reason:02x} "
                f"{hci.HCI_Constant.error_name(reason)})"
            )
        return f"{self.address}: {what} failed: not connected"

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        lost = self._lost
        if connection is not self._connection or lost is None or lost.done():
            return
        lost.set_result(reason)
        reported = self._connected and not self._closing
        self._connected = False
        self._connection = None
        self._peer = None
        self._characteristics.clear()
        self._subscribers.clear()
        for task in list(self._operations):
            task.cancel()
        name = hci.HCI_Constant.error_name(reason)
        if not reported:
            _LOGGER.debug("%s: disconnected (reason 0x%02x %s)", self.address, reason, name)
            return
        _LOGGER.info("%s: link lost (reason 0x%02x %s)", self.address, reason, name)
        callback = self._disconnected_callback
        if callback is not None:
            # call_soon: the operations failed above wake up first, then bleak hears of it.
            asyncio.get_running_loop().call_soon(callback)

    async def _disconnect(self, connection: Connection) -> None:
        """Ask for the link to end, once, and wait for the Disconnection Complete."""
        lost = self._lost
        if connection is not self._connection or lost is None or lost.done():
            return
        if self._terminating is not connection:
            # One HCI Disconnect per link: bumble's second disconnect() would wait for an event
            # that has already been emitted.
            self._terminating = connection
            self._spawn(self._terminate(connection))
        await asyncio.wait((lost,), timeout=DISCONNECT_TIMEOUT_S)
        if not lost.done():
            _LOGGER.warning("%s: no disconnection event; forgetting the link", self.address)
            reason = hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR
            self._on_disconnection(connection, reason)

    async def _terminate(self, connection: Connection) -> None:
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await connection.disconnect()
        except (core.BaseBumbleError, hci.HCI_Error, TimeoutError) as exc:
            _LOGGER.debug("%s: disconnect: %s", self.address, _describe(exc))

    def _drop(self, why: str) -> None:
        connection = self._connection
        if connection is None:
            return
        _LOGGER.warning("%s: %s; disconnecting", self.address, why)
        self._spawn(self._disconnect(connection))

    async def _connect_le(self, limit_s: float) -> Connection:
        # bumble waits for the controller to confirm a cancelled connect without a limit.
        async with asyncio.timeout(limit_s + CANCEL_GRACE_S):
            try:
                connection: Connection = await self._central.connect(
                    self._peer_address, timeout=limit_s
                )
            except asyncio.CancelledError:
                # bumble does not cancel the controller's connect when its caller is cancelled.
                await asyncio.shield(self._abandon_connect())
                raise
            return connection

    async def _abandon_connect(self) -> None:
        """Stop the controller initiating; drop a connection that completed meanwhile."""
        with contextlib.suppress(core.BaseBumbleError, hci.HCI_Error, TimeoutError):
            async with asyncio.timeout(CANCEL_GRACE_S):
                await self._central.send_sync_command(hci.HCI_LE_Create_Connection_Cancel_Command())
            for connection in list(self._central.connections.values()):
                if connection.peer_address == self._peer_address:
                    async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                        await connection.disconnect()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine, name=f"{self.address} cleanup")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
