"""Simulators in another process (sim.hosts.remote): the controller's real stack over loopback."""

from __future__ import annotations

import asyncio
import sys

import pytest

from firmware_bridge.device import LinkState, MassagerLink, StopReason
from firmware_bridge.transport import BleakTransport
from sim.hosts.remote import RemoteAir, RemoteBleakClient, SimulatorServer
from tests.rigs import until

pytestmark = pytest.mark.sim_only


async def test_a_link_drives_and_stops_a_simulator_in_the_server() -> None:
    server = SimulatorServer(3)
    listening = await server.serve()
    air = await RemoteAir.open(listening.sockets[0].getsockname()[1])
    try:
        transport = BleakTransport(
            air.device(2), backend=RemoteBleakClient, backend_kwargs={"air": air}
        )
        async with MassagerLink(transport) as link:
            assert link.state == LinkState.READY
            await link.start()
            link.set_levels((3, 4, 5))
            massager = server.massagers[2]
            await until(lambda: massager.firmware.levels == (3, 4, 5))
            result = await link.stop()
            assert result.confirmed
            assert massager.firmware.levels == (0, 0, 0)
            assert server.massagers[0].firmware.levels == (0, 0, 0)  # only device 2 was driven
    finally:
        await air.close()
        listening.close()
        for massager in server.massagers:
            await massager.close()


async def test_the_server_process_going_away_is_a_lost_link() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim.hosts.remote", "--devices", "2",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    port = int(line.split()[1])
    air = await RemoteAir.open(port)
    try:
        transport = BleakTransport(
            air.device(0), backend=RemoteBleakClient, backend_kwargs={"air": air}
        )
        link = MassagerLink(transport)
        async with link:
            await link.start()
            link.set_levels((2, 2, 2))
            process.kill()
            await until(lambda: link.state != LinkState.READY, within=10)
            assert link.latched
            assert link.stop_reason == StopReason.LINK_LOST
    finally:
        await air.close()
        if process.returncode is None:
            process.kill()
        await process.wait()
