"""Frames out, answers back: sequence numbers and waiting for the ACK, NACK or CAPABILITIES.

The link decides what to send and what an answer means; this only numbers frames, writes them
and matches answers to the frames they answer, with every wait bounded by the ack timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from firmware_bridge.errors import DeviceRejectedError, DeviceTimeoutError
from firmware_bridge.protocol import Capabilities, FrameType, Hello, Message, Nack, encode
from firmware_bridge.protocol.timebase import Clock


class Exchange:
    """One link's outgoing frames and the answers they wait for."""

    def __init__(self, transport: Any, clock: Clock, *, ack_timeout_s: float) -> None:
        self.transport = transport
        self.clock = clock
        self.ack_timeout_s = ack_timeout_s
        self.last_sent = 0.0  # clock time of the last frame handed to the transport
        self._seq = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._caps_waiter: asyncio.Future[Capabilities] | None = None

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        return seq

    async def send(
        self, message: Message, *, seq: int | None = None, response: bool = False
    ) -> int:
        """Write one frame (with response: wait for the ATT layer to confirm delivery)."""
        seq = self.next_seq() if seq is None else seq
        await self.transport.write(encode(message, seq), response=response)
        self.last_sent = self.clock.now()
        return seq

    async def request(
        self, message: Message, *, response: bool = False, attempts: int = 1
    ) -> Message:
        """Send and wait for the matching ACK (a NACK raises DeviceRejectedError)."""
        for _ in range(attempts - 1):
            with contextlib.suppress(DeviceTimeoutError):
                return await self._request_once(message, response=response)
        return await self._request_once(message, response=response)

    async def _request_once(self, message: Message, *, response: bool) -> Message:
        seq = self.next_seq()
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[seq] = waiter
        try:
            await self.send(message, seq=seq, response=response)
            async with asyncio.timeout(self.clock.real_seconds(self.ack_timeout_s)):
                return await waiter
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{self.transport.name}: no ack for {message.TYPE.name} in {self.ack_timeout_s} s"
            ) from exc
        finally:
            self._pending.pop(seq, None)

    async def hello(self, attempts: int) -> Capabilities:
        """HELLO until CAPABILITIES answer (the answer may be what a lossy link ate)."""
        loop = asyncio.get_running_loop()
        for _ in range(attempts):
            self._caps_waiter = loop.create_future()
            try:
                await self.send(Hello())
                async with asyncio.timeout(self.clock.real_seconds(self.ack_timeout_s)):
                    return await self._caps_waiter
            except TimeoutError:
                continue
            finally:
                self._caps_waiter = None
        raise DeviceTimeoutError(
            f"{self.transport.name}: no answer to HELLO after {attempts} tries"
        )

    # -- answers, from the link's notification handler --------------------------------------

    def capabilities(self, caps: Capabilities) -> None:
        if self._caps_waiter is not None and not self._caps_waiter.done():
            self._caps_waiter.set_result(caps)

    def answer(self, seq: int, message: Message) -> None:
        """An ACK or NACK for frame `seq`; a NACK to a pending HELLO refuses the handshake."""
        waiter = self._pending.get(seq)
        if waiter is not None and not waiter.done():
            if isinstance(message, Nack):
                waiter.set_exception(self._refused(f"device refused frame {seq}", message))
            else:
                waiter.set_result(message)
            return
        if (
            isinstance(message, Nack)
            and message.acked_type == FrameType.HELLO
            and self._caps_waiter is not None
            and not self._caps_waiter.done()
        ):
            self._caps_waiter.set_exception(self._refused("HELLO refused", message))

    def fail_all(self, exc: BaseException) -> None:
        """The link is gone: every waiter learns it now rather than at its timeout."""
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(exc)
        if self._caps_waiter is not None and not self._caps_waiter.done():
            self._caps_waiter.set_exception(exc)

    def _refused(self, what: str, nack: Nack) -> DeviceRejectedError:
        return DeviceRejectedError(
            f"{self.transport.name}: {what}: {nack.code.name}",
            code=nack.code,
            frame_type=nack.acked_type,
        )
