"""Transports: the `Transport` seam and its production implementation over bleak."""

from firmware_bridge.transport.base import Transport
from firmware_bridge.transport.bleak_transport import BleakTransport, find_massager

__all__ = ["BleakTransport", "Transport", "find_massager"]
