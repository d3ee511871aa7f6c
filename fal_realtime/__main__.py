"""Run the command line: ``python -m fal_realtime``."""

import sys

from .cli import main

sys.exit(main())
