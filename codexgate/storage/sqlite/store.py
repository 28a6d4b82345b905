"""The SQLite store: one class composed of the per-table parts, implementing Storage."""

from __future__ import annotations

from codexgate.storage.sqlite.alerts import AlertsMixin
from codexgate.storage.sqlite.feed import FeedMixin
from codexgate.storage.sqlite.instances import InstancesMixin
from codexgate.storage.sqlite.retention import RetentionMixin
from codexgate.storage.sqlite.settings import SettingsMixin
from codexgate.storage.sqlite.usage import UsageMixin


class Store(SettingsMixin, UsageMixin, AlertsMixin, FeedMixin, RetentionMixin, InstancesMixin):
    """Every table of codexgate's SQLite file over one connection; open with Store.open()."""
