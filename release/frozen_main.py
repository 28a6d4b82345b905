"""The standalone binary's entry point: PyInstaller runs this file as __main__."""

import sys

from codexgate.cli.main import main

sys.exit(main())
