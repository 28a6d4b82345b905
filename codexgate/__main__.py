"""`python -m codexgate` runs the gateway."""

import sys

from .cli import main

sys.exit(main())
