"""Journal a session, then read the history the way `massager history` does.

Sessions are kept in the user's data directory (`$MASSAGER_DATA_DIR` overrides it); the files
are readable by the user only.
"""

import asyncio

import firmware_bridge


async def main() -> None:
    async with firmware_bridge.simulated(speed=100) as massager:
        await massager.play("relax", cap=3, journal=True)

    sessions = firmware_bridge.read_history()
    for entry in sessions[-5:]:
        minutes = (entry.get("duration_s") or 0) / 60
        outcome = entry.get("stop_reason") or ("ended" if entry.get("closed") else "interrupted")
        print(f"{entry.get('started_at')}  {entry.get('profile'):12} {minutes:5.1f} min  {outcome}")


if __name__ == "__main__":
    asyncio.run(main())
