"""Build a profile in code, check it, and play it on the simulator.

Levels are fractions of the person's ceiling (never device levels), and every profile ends
with at least 30 s of cool-down at a light level: the model refuses one that does not.
"""

import asyncio

from pydantic import ValidationError

import firmware_bridge
from profiles.model import Profile, Pulse, Ramp, Wave


def evening() -> Profile:
    return Profile(
        name="evening",
        title="Evening wind-down",
        segments=[
            Ramp(duration_s=60, start=0.0, end=0.4, label="warm-up"),
            Wave(duration_s=120, low=0.1, high=0.4, period_s=10, travel="toe_to_heel"),
            Pulse(duration_s=30, level=0.3, on_s=0.5, off_s=0.5, zones=["heel"]),
            Ramp(duration_s=60, start=0.3, end=0.0, cool_down=True, label="cool-down"),
        ],
    )


async def main() -> None:
    profile = evening()
    print(f"{profile.name}: {profile.duration_s / 60:.1f} min, cool-down {profile.cool_down_s:g} s")
    try:
        Profile(name="abrupt", title="Abrupt", segments=[Ramp(duration_s=60, start=0, end=0.5)])
    except ValidationError as exc:
        print("refused:", exc.errors()[0]["msg"])

    async with firmware_bridge.simulated(speed=50) as massager:
        record = await massager.play(profile, cap=3)
    print(f"{record.stop_reason}: highest intensity {record.max_intensity:.0%} (cap 3 = 30%)")


if __name__ == "__main__":
    asyncio.run(main())
