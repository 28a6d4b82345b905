"""End-to-end tests: the real Codex CLI, codexgate and a fake ChatGPT backend on loopback."""
