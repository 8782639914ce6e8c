"""Play the heel-spur routine on a simulated massager and print what happened.

python examples/simulator_session.py            # 60 times faster than real time
python examples/simulator_session.py --speed 1  # in real time (14.5 minutes)
"""

import argparse
import asyncio

import firmware_bridge


async def main(speed: float) -> None:
    async with firmware_bridge.simulated(speed=speed) as massager:
        print(f"connected to {massager.name} (failsafe: {massager.failsafe})")

        def show(sample: firmware_bridge.Sample) -> None:
            if int(sample.elapsed_s) % 60 == 0:  # one line per minute of session time
                print(f"{sample.elapsed_s:6.0f} s  {sample.segment:28}  {sample.applied:4.0%}")

        record = await massager.play("heel-spur", cap=4, on_sample=show)
        levels = massager.simulator.firmware.levels if massager.simulator else None

    print(f"stop reason: {record.stop_reason}, highest intensity {record.max_intensity:.0%}")
    print(f"ratings from the simulated person: {[nrs for _, nrs in record.ratings]}")
    print(f"the device confirmed zero: {record.stop_confirmed}; motors now at {levels}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=60.0)
    asyncio.run(main(parser.parse_args().speed))
