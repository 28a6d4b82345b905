"""`python -m bench` runs the benchmark and prints the comparison table."""

import sys

from .cli import main

sys.exit(main())
