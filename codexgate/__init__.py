"""codexgate: a streaming gateway for Codex clients that records every account's usage windows."""

# The one place the version is written: the build reads it from here (pyproject.toml's
# [tool.hatch.version]) into the wheel's metadata, and `codexgate --version` prints it.
__version__ = "0.1.0"
