"""Running the page script's modules in Node.js, to hold them against the Python rules."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any, Final

import pytest

from tests.helpers.paths import REPO

NODE: Final = shutil.which("node")


def node() -> str:
    """The node command; its absence fails the test (`make test` needs Node.js 20+)."""
    if NODE is None:
        pytest.fail("node is not installed; `make test` needs Node.js 20+", pytrace=False)
    return NODE


def run_module(script: str, inputs: object) -> Any:
    """Run an ES module `script` from the repository with `inputs` as JSON on its stdin; the
    JSON it prints."""
    done = subprocess.run(
        [node(), "--input-type=module", "--eval", script],
        cwd=REPO,
        input=json.dumps(inputs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)
