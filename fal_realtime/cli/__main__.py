"""Run the command line: ``python -m fal_realtime.cli``."""

import sys

from . import main

sys.exit(main())
