"""Forwarding HTTP, SSE and WebSocket traffic to the upstream: header policy and relays."""
