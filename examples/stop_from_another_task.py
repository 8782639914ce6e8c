"""Stop a running session from another task: zero reaches the motors ahead of anything else.

The same stop is what Ctrl-C, `massager stop` over MQTT and the device's button do.
"""

import asyncio

import firmware_bridge


async def stop_after(session: firmware_bridge.Session, seconds: float) -> None:
    """Another part of the program (a GUI button, a web request) decides to stop."""
    await asyncio.sleep(seconds)
    result = await session.stop()
    print(f"stop confirmed by the device: {result.confirmed}")


async def main() -> None:
    async with firmware_bridge.simulated(speed=20) as massager:
        session = massager.session("relax", cap=3)
        async with asyncio.TaskGroup() as group:
            group.create_task(stop_after(session, 1.0))
            record = await session.run()
        applied = massager.simulator.firmware.levels if massager.simulator else None

    print(f"stop reason: {record.stop_reason} after {record.duration_s:.0f} s of session time")
    print(f"motors: {applied}")


if __name__ == "__main__":
    asyncio.run(main())
