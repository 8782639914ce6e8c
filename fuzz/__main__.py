"""`python -m fuzz TARGET [libFuzzer flags] [CORPUS_DIR ...]`: fuzz one target with atheris.

`scripts/fuzz` is the usual way in; this is the child process it starts for each target.
"""

from __future__ import annotations

import importlib
import sys

import atheris

from fuzz import targets

# Instrumented so their branches and comparisons guide the fuzzer: the project, and the pure
# Python stdlib parsers it reads TOML and JSON with. (urllib.parse and ipaddress would help the
# config target too, but they are loaded before this runs, and only new imports are hooked.)
INSTRUMENTED = ("firmware_bridge", "profiles", "tomllib", "json")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets():
        raise SystemExit(f"usage: python -m fuzz {{{','.join(targets())}}} [libFuzzer args]")
    name = sys.argv[1]
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        target = importlib.import_module(f"fuzz.{name}")
    # The target's own input size limit first: a -max_len given on the command line wins.
    flags = [f"-max_len={target.MAX_LEN}", *sys.argv[2:]]
    atheris.Setup([sys.argv[0], *flags], target.TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
