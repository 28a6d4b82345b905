"""The PostgreSQL store: one class composed of the per-table parts, implementing Storage."""

from __future__ import annotations

from codexgate.storage.postgresql.alerts import AlertsMixin
from codexgate.storage.postgresql.feed import FeedMixin
from codexgate.storage.postgresql.instances import InstancesMixin
from codexgate.storage.postgresql.retention import RetentionMixin
from codexgate.storage.postgresql.settings import SettingsMixin
from codexgate.storage.postgresql.usage import UsageMixin


class PostgresStore(
    SettingsMixin, UsageMixin, AlertsMixin, FeedMixin, RetentionMixin, InstancesMixin
):
    """Every table of codexgate's PostgreSQL database over one pool; open with .open()."""
