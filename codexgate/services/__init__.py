"""Owned background tasks and shared state: recorder, feed bus, alerting, retention, metrics."""
