"""The original plan's answer shapes, as tests check them."""

from __future__ import annotations

from typing import Any


def assert_compat_error(body: dict[str, Any], status: str, error_type: str) -> None:
    """The plan's {"status", "message"} around codexgate's one envelope."""
    assert set(body) == {"status", "message", "error"}
    assert body["status"] == status
    assert body["error"]["type"] == error_type
    assert body["message"] == body["error"]["message"]
