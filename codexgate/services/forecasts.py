"""Every account's window forecasts, kept current from the usage rows as they are written.

The maths is in forecast.py (pure). This cache holds, per account, limit family and window, the
samples of the current window period: loaded from the store the first time they are asked for,
then appended to as the alert engine and the feed read new rows. It is owned by the app
(FORECASTS) and shared by the API, the feed, the dashboard, the metrics and the alert rules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

from codexgate.core.forecast import Forecast, Sample, forecast
from codexgate.core.rows import LatestUsageRow, UsageRow
from codexgate.core.windows import SAME_PERIOD_SECONDS, WindowValue
from codexgate.storage.interface import UsageStore

# Samples kept per window period: one per 1/400 of the window at most (45 s of a 5-hour window,
# 25 minutes of a week), and never more than MAX_SAMPLES.
SAMPLES_PER_WINDOW: Final = 400
MAX_SAMPLES: Final = 2000
DEFAULT_WINDOW_SECONDS: Final = 5 * 3600
# A forecast is computed again after this long even without a new sample (it moves with time).
RESULT_SECONDS: Final = 10.0
# How far back a first load reads (the longest window is a month).
LOOKBACK_SECONDS: Final = 31 * 86400

_Key = tuple[int, str]  # (account id, limit id)


class _Window:
    """The samples of one window's current period, thinned to about SAMPLES_PER_WINDOW."""

    __slots__ = ("minutes", "result", "samples")

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        self.minutes: int | None = None
        self.result: tuple[float, Forecast] | None = None  # (computed at, forecast)

    def add(self, at: float, value: WindowValue) -> None:
        if value.window_minutes:
            self.minutes = value.window_minutes
        if value.used_percent is None:
            return
        self.result = None
        sample = Sample(at, value.used_percent, value.resets_at)
        samples = self.samples
        if samples:
            last = samples[-1]
            if (
                value.resets_at is not None
                and last.resets_at is not None
                and value.resets_at - last.resets_at > SAME_PERIOD_SECONDS
            ):
                samples.clear()  # a new period: the old one says nothing about it
            elif len(samples) >= 2 and at - samples[-2].at < self._spacing():
                # Closer than the spacing to the sample before the newest: the newest is
                # replaced, so a busy window keeps its shape in a few hundred samples (the
                # forecast costs O(samples) on every read).
                samples[-1] = sample
                return
        samples.append(sample)

    def _spacing(self) -> float:
        length = self.minutes * 60 if self.minutes else DEFAULT_WINDOW_SECONDS
        return length / SAMPLES_PER_WINDOW

    def forecast(self, now: float) -> Forecast:
        """The forecast at now; reused for RESULT_SECONDS while no sample arrives."""
        if self.result is not None and 0 <= now - self.result[0] < RESULT_SECONDS:
            return self.result[1]
        found = forecast(list(self.samples), now=now, window_minutes=self.minutes)
        self.result = (now, found)
        return found


class ForecastCache:
    """Per account and limit family, each window's samples since its last reset."""

    def __init__(self, store: UsageStore) -> None:
        self._store = store
        self._windows: dict[_Key, dict[str, _Window]] = {}
        self._newest: dict[_Key, int] = {}  # the newest row id taken in, per key

    async def ensure(self, account_id: int, limit_id: str, now: float) -> None:
        """Load a limit family's recent history the first time it is needed."""
        key = (account_id, limit_id)
        if key in self._windows:
            return
        rows = await self._store.recent_history(
            account_id, limit_id, since=now - LOOKBACK_SECONDS, limit=MAX_SAMPLES
        )
        if key in self._windows:  # loaded by another caller while we read
            return
        self._windows[key] = {}
        for row in rows:
            self._take(key, row)

    async def ensure_all(self, keys: Iterable[_Key], now: float) -> None:
        """Load the limit families not loaded yet, all in one read of the store."""
        missing = [key for key in dict.fromkeys(keys) if key not in self._windows]
        if not missing:
            return
        found = await self._store.recent_histories(
            missing, since=now - LOOKBACK_SECONDS, limit=MAX_SAMPLES
        )
        for key, rows in found.items():
            if key in self._windows:  # loaded by another caller while we read
                continue
            self._windows[key] = {}
            for row in rows:
                self._take(key, row)

    def add(self, row: UsageRow) -> None:
        """Take in a row just written (ignored until its family is loaded, which reads it)."""
        key = (row.account_id, row.limit_id)
        if key in self._windows:
            self._take(key, row)

    def forget(self, account_id: int) -> None:
        """Drop a deleted account."""
        for key in [key for key in self._windows if key[0] == account_id]:
            del self._windows[key]
            self._newest.pop(key, None)

    def forecasts(self, account_id: int, limit_id: str, now: float) -> dict[str, Forecast]:
        """The forecast of each window of a loaded limit family that has samples."""
        windows = self._windows.get((account_id, limit_id), {})
        return {name: window.forecast(now) for name, window in windows.items() if window.samples}

    async def of_rows(
        self, rows: Iterable[LatestUsageRow | UsageRow], now: float
    ) -> dict[_Key, dict[str, Forecast]]:
        """The forecasts of the limit families the rows name (loading them when needed)."""
        result: dict[_Key, dict[str, Forecast]] = {}
        usage = [item.usage if isinstance(item, LatestUsageRow) else item for item in rows]
        await self.ensure_all(((row.account_id, row.limit_id) for row in usage), now)
        for row in usage:
            key = (row.account_id, row.limit_id)
            if key in result:
                continue
            await self.ensure(row.account_id, row.limit_id, now)
            self.add(row)
            result[key] = self.forecasts(row.account_id, row.limit_id, now)
        return result

    def _take(self, key: _Key, row: UsageRow) -> None:
        if row.id <= self._newest.get(key, 0):
            return
        self._newest[key] = row.id
        windows = self._windows[key]
        for value in row.windows():
            if value.used_percent is None and value.label not in windows:
                continue
            windows.setdefault(value.label, _Window()).add(row.captured_at, value)
