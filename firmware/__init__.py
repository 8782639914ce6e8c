"""The reference firmware: `core.py` (protocol v1, sans-IO) and the ESP32 glue beside it.

Only `core` is imported from Python (by the tests and by `sim.reference`); the files are copied
to the board's filesystem as they are (docs/firmware.md). Nothing here imports the controller or
the simulator.
"""
