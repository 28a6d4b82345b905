"""The command line: `serve`, the offline commands and `codex-config`."""
