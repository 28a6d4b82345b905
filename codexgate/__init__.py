"""codexgate: a streaming gateway for Codex clients that records every account's usage windows."""

__version__ = "0.1.0"
