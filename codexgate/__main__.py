"""`python -m codexgate` runs the gateway."""

import sys

from codexgate.cli.main import main

sys.exit(main())
