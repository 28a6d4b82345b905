"""Where the repository and the test data are, for every test module wherever it sits."""

from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
DATA: Final = REPO / "tests" / "data"
