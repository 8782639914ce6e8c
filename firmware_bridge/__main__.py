# PYTHON_ARGCOMPLETE_OK  (argcomplete's global completion looks for this marker)
"""`python -m firmware_bridge` is the `massager` command."""

import sys

from firmware_bridge.cli import main

sys.exit(main())
