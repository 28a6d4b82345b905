"""The pages' strings in English and Simplified Chinese, and the choice between them.

A page's language is the `codexgate_lang` cookie when it names one we have, else the best match
of `Accept-Language`, else English. Every key has both languages (a test checks that every key a
template or the page script uses is here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import Final, get_args

from codexgate.core.rows import AlertKind
from codexgate.core.text import clock, duration_parts

ENGLISH: Final = "en"
CHINESE: Final = "zh-CN"
LANGUAGES: Final = (ENGLISH, CHINESE)
# Each language's name in itself, for the switch.
LANGUAGE_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {ENGLISH: "English", CHINESE: "简体中文"}
)
LANG_COOKIE: Final = "codexgate_lang"
_RANGE: Final = re.compile(
    r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*"
)

# key: (English, Simplified Chinese). `{name}` fields are filled by format(); keys starting
# with "js." are the page script's only (it gets this language's whole catalog).
_CATALOG: Final[Mapping[str, tuple[str, str]]] = MappingProxyType(
    {
        "title.dashboard": ("Accounts", "账号"),
        "title.account": ("Account", "账号"),
        "title.sign_in": ("Sign in", "登录"),
        "nav.accounts": ("All accounts", "全部账号"),
        "nav.sign_out": ("Sign out", "退出登录"),
        "nav.sign_out_everywhere": ("Sign out everywhere", "在所有设备上退出"),
        "nav.sign_out_everywhere_hint": (
            "Ends every signed-in browser's session, this one's too",
            "结束所有已登录浏览器的会话，包括当前这个",
        ),
        "nav.language": ("Language", "语言"),
        "nav.skip": ("Skip to content", "跳到正文"),
        "live.connecting": ("Connecting…", "正在连接…"),
        "live.live": ("Live", "实时"),
        "live.reconnecting": ("Reconnecting…", "正在重新连接…"),
        "live.static": ("Not live: reload to update", "非实时：刷新页面以更新"),
        "summary.heading": ("Summary", "概览"),
        "summary.accounts": ("Accounts", "账号数"),
        "summary.near": ("Near limit", "接近上限"),
        "summary.near_hint": ("at {percent}% or more", "已用 {percent}% 及以上"),
        "summary.at_limit": ("At limit", "已达上限"),
        "summary.soonest": ("Soonest reset", "最近重置"),
        "summary.none": ("none known", "未知"),
        "summary.requests": ("Requests", "请求数"),
        "summary.tokens": ("Tokens", "Token 数"),
        "summary.period": ("Period", "时段"),
        "summary.reload": ("reload to update", "刷新页面以更新"),
        "pages.heading": ("Pages of accounts", "账号分页"),
        "pages.first": ("First", "第一页"),
        "pages.previous": ("Previous", "上一页"),
        "pages.next": ("Next", "下一页"),
        "pages.last": ("Last", "最后一页"),
        "pages.status": (
            "Page {page} of {pages}: accounts {first} to {last} of {total}",
            "第 {page} 页，共 {pages} 页：第 {first} 至 {last} 个账号，共 {total} 个",
        ),
        "period.24h": ("24 h", "24 小时"),
        "period.7d": ("7 d", "7 天"),
        "period.24h_long": ("last 24 hours", "最近 24 小时"),
        "period.7d_long": ("last 7 days", "最近 7 天"),
        "period.30d_long": ("last 30 days", "最近 30 天"),
        "controls.heading": ("Show and sort", "显示与排序"),
        "controls.show": ("Show", "显示"),
        "controls.used": ("Used", "已用"),
        "controls.remaining": ("Remaining", "剩余"),
        "controls.sort": ("Sort by", "排序"),
        "controls.sort_name": ("Name", "名称"),
        "controls.sort_used": ("Most used", "用量最高"),
        "controls.sort_reset": ("Soonest reset", "最先重置"),
        "controls.apply": ("Apply", "应用"),
        "accounts.heading": ("Accounts", "账号"),
        "accounts.empty": (
            "No accounts yet. Send a request through codexgate, or add one below.",
            "还没有账号。通过 codexgate 发送一个请求，或在下方添加。",
        ),
        "card.unnamed": ("unnamed", "未命名"),
        # An account without a display name or email (core/accounts.py default_title).
        "card.default_title": ("Account {id}", "账号 {id}"),
        "card.plan": ("Plan", "套餐"),
        "card.no_data": ("No usage reported yet", "尚无用量数据"),
        "card.history": ("History and requests", "历史与请求"),
        "card.rename": ("Rename", "重命名"),
        "card.delete": ("Delete", "删除"),
        "card.name_label": ("Display name", "显示名称"),
        "card.save": ("Save", "保存"),
        "card.cancel": ("Cancel", "取消"),
        "window.5h": ("5-hour", "5 小时"),
        "window.7d": ("Weekly", "每周"),
        "window.monthly": ("Monthly", "每月"),
        "window.used": ("{percent}% used", "已用 {percent}%"),
        "window.left": ("{percent}% left", "剩余 {percent}%"),
        "window.unknown": ("unknown", "未知"),
        "window.not_reported": ("not reported", "未报告"),
        "window.resets_in": ("resets in {duration}", "{duration}后重置"),
        "window.resetting": ("resetting", "正在重置"),
        "window.reset_unknown": ("reset time unknown", "重置时间未知"),
        "window.resets_at": ("resets {time}, in {duration}", "{time} 重置（{duration}后）"),
        "window.reset_inferred": (
            "reset at {time} · no request since",
            "已于 {time} 重置 · 此后没有请求",
        ),
        "limit.back_at": (
            "Limit reached, back at {time} (in {duration})",
            "已达上限，{time} 恢复（{duration}后）",
        ),
        "limit.back_now": ("Limit reached, coming back now", "已达上限，即将恢复"),
        "limit.back_unknown": ("Limit reached, back time unknown", "已达上限，恢复时间未知"),
        "forecast.line": (
            "At this pace the {window} window runs out at {time}, {duration} before it resets",
            "按当前速度，{window}窗口将在 {time} 用完，比重置早 {duration}",
        ),
        "fresh.last_report": ("last report {age} ago", "最近一次报告在 {age}前"),
        "fresh.idle_hint": (
            "No request through codexgate for a while: the numbers are the last ones reported.",
            "一段时间内没有经过 codexgate 的请求：这些数字是最后一次报告的值。",
        ),
        "clock.utc": ("{time} UTC", "{time}（UTC）"),
        "clock.weekdays": ("Mon Tue Wed Thu Fri Sat Sun", "周一 周二 周三 周四 周五 周六 周日"),
        "level.ok": ("ok", "正常"),
        "level.warn": ("high", "偏高"),
        "level.critical": ("near limit", "接近上限"),
        "level.full": ("limit reached", "已达上限"),
        "level.unknown": ("unknown", "未知"),
        "limit.extra": ("Extra limit: {name}", "附加限额：{name}"),
        "spend.kind.individual": ("Spend limit", "个人消费上限"),
        "spend.kind.group_default": ("Group default spend limit", "组默认消费上限"),
        "spend.kind.workspace_default": ("Workspace default spend limit", "工作区默认消费上限"),
        "spend.kind.role_budget": ("Role budget", "角色预算"),
        "spend.kind.group_shared": ("Group spend limit", "组共享消费上限"),
        "spend.kind.workspace_shared": ("Workspace spend limit", "工作区共享消费上限"),
        "spend.amount": ("{used} of {limit}", "已用 {used} / {limit}"),
        "spend.reached": ("reached", "已达上限"),
        "spend.reset_passed": ("reset at {time}", "已于 {time} 重置"),
        "card.reset_credits": ("Reset credits left: {count}", "剩余重置次数：{count}"),
        "fresh.updated": ("updated {age} ago", "{age}前更新"),
        "fresh.just_now": ("updated just now", "刚刚更新"),
        "fresh.via": ("from {source}", "来源：{source}"),
        "source.headers": ("response headers", "响应头"),
        "source.event": ("stream event", "流事件"),
        "source.usage_body": ("usage body", "用量接口"),
        "source.error": ("error response", "错误响应"),
        "duration.d": ("{n}d", "{n}天"),
        "duration.h": ("{n}h", "{n}小时"),
        "duration.m": ("{n}m", "{n}分"),
        "duration.s": ("{n}s", "{n}秒"),
        "duration.join": (" ", ""),
        "add.heading": ("Add an account", "添加账号"),
        "add.name": ("Name (optional)", "名称（可选）"),
        "add.token": ("Access token", "访问令牌"),
        "add.note": (
            "The token is sent to this codexgate server once to identify the account's seat. "
            "The server keeps only its fingerprint, never the token itself, and never shows "
            "it again.",
            "令牌只发送到此 codexgate 服务器一次，用于识别账号席位。服务器只保存它的指纹，"
            "从不保存令牌本身，也不会再次显示。",
        ),
        "add.submit": ("Add account", "添加账号"),
        "add.done": ("Added {name}.", "已添加 {name}。"),
        "add.exists": ("{name} was already here.", "{name} 已存在。"),
        "delete.title": ("Delete {name}?", "删除 {name}？"),
        "delete.body": (
            "This deletes the account {name} and all of its usage history and request log. "
            "It cannot be undone.",
            "这会删除账号 {name} 及其全部用量历史和请求记录，且无法撤销。",
        ),
        "delete.confirm": ("Delete account and history", "删除账号及历史"),
        "delete.done": ("Deleted {name}.", "已删除 {name}。"),
        "renamed": ("Renamed to {name}.", "已重命名为 {name}。"),
        "add.where": (
            "Where to find it: the Codex CLI keeps its sign-in in ~/.codex/auth.json; copy the "
            'value of "access_token" (under "tokens") from that file. Or run: codexgate '
            "accounts add --from-codex-auth",
            "在哪里找到：Codex CLI 把登录信息保存在 ~/.codex/auth.json；复制该文件中 "
            '"tokens" 下 "access_token" 的值。也可以运行：codexgate accounts add '
            "--from-codex-auth",
        ),
        "summary.use_next": ("Use next", "建议下一个使用"),
        "summary.use_next_none": ("no account has room now", "目前没有有余量的账号"),
        "summary.use_next_hint": (
            "The account with the most room left across its windows (docs/dashboard.md)",
            "各窗口剩余余量最多的账号（见 docs/dashboard.md）",
        ),
        "summary.activity": ("Activity", "活动"),
        "controls.sort_left": ("Most left", "剩余最多"),
        "card.use_next": ("Use next", "建议使用"),
        "card.menu": ("Actions", "操作"),
        "card.refresh": ("Refresh now", "立即刷新"),
        "card.refresh_done": (
            "Asked the upstream for {name}'s usage.",
            "已向上游请求 {name} 的用量。",
        ),
        "card.refresh_failed": (
            "The upstream gave no usable answer for {name}; it will be asked again later.",
            "上游没有给出 {name} 的可用回答，稍后会再次请求。",
        ),
        "card.refresh_no_token": (
            "No usable token for {name} at hand: send a request through codexgate with it first.",
            "手头没有 {name} 的可用令牌：请先用它通过 codexgate 发送一次请求。",
        ),
        "refresh.stopped.unauthorized": (
            "Idle refresh stopped: the upstream refused the token (401). The next request from"
            " this account starts it again.",
            "空闲刷新已停止：上游拒绝了令牌（401）。此账号的下一次请求会重新开始。",
        ),
        "refresh.stopped.forbidden": (
            "Idle refresh stopped: the upstream refused the token (403). The next request from"
            " this account starts it again.",
            "空闲刷新已停止：上游拒绝了令牌（403）。此账号的下一次请求会重新开始。",
        ),
        "refresh.stopped.rate_limited": (
            "Idle refresh stopped: the upstream asked to slow down (429). The next request from"
            " this account starts it again.",
            "空闲刷新已停止：上游要求放慢（429）。此账号的下一次请求会重新开始。",
        ),
        "refresh.stopped.rejected": (
            "Idle refresh stopped: the upstream refused the request. The next request from this"
            " account starts it again.",
            "空闲刷新已停止：上游拒绝了请求。此账号的下一次请求会重新开始。",
        ),
        "manage.heading": ("Manage accounts", "管理账号"),
        "manage.link": ("Manage accounts", "管理账号"),
        "manage.list": ("Accounts", "账号"),
        "manage.empty": ("No accounts yet.", "还没有账号。"),
        "manage.next": ("Next accounts", "下一页账号"),
        "manage.first": ("First accounts", "第一页账号"),
        "manage.last_seen": ("Last seen", "最后出现"),
        "manage.back": ("Back to the overview", "返回概览"),
        "error.api": ("codexgate answered: {message}", "codexgate 返回：{message}"),
        "error.network": (
            "codexgate could not be reached. Try again.",
            "无法连接 codexgate，请重试。",
        ),
        "error.session": (
            "Your session has ended. Sign in again.",
            "会话已结束，请重新登录。",
        ),
        "history.heading": ("Used percent over time", "用量百分比变化"),
        "history.range": ("Range", "范围"),
        "history.empty": ("No history in this range.", "此范围内没有历史数据。"),
        "history.chart_label": (
            "{window} window, used percent over the {range}",
            "{window}窗口在{range}的用量百分比",
        ),
        "history.drops": ("Drops to near 0% are resets.", "降到接近 0% 的位置是重置。"),
        "period.window_long": ("current window", "当前窗口"),
        "history.chart_desc": (
            "From {start} to {end}. Dashed lines: {warn}% (high) and {critical}% (near limit).",
            "从 {start} 到 {end}。虚线：{warn}%（偏高）和 {critical}%（接近上限）。",
        ),
        "history.marker_reset": ("reset", "重置"),
        "history.marker_now": ("now", "现在"),
        "history.times_utc": ("Times in UTC.", "时间为 UTC。"),
        "history.times_local": ("Times in your time zone ({zone}).", "时间为本地时区（{zone}）。"),
        "history.show_table": ("Show as table", "以表格显示"),
        "history.table_caption": (
            "{window} window: used percent at each change",
            "{window}窗口：每次变化时的用量百分比",
        ),
        "history.table_time": ("Time", "时间"),
        "history.table_used": ("Used", "已用"),
        "history.table_empty": ("No values in this range.", "此范围内没有数值。"),
        "requests.heading": ("Requests", "请求"),
        "requests.empty": ("No requests in the log.", "请求记录为空。"),
        "requests.time": ("Time", "时间"),
        "requests.model": ("Model", "模型"),
        "requests.status": ("Status", "状态"),
        "requests.tokens": ("Tokens", "Token 数"),
        "requests.ttfb": ("TTFB", "首字节时间"),
        "requests.transport": ("Transport", "传输"),
        "requests.older": ("Older requests", "更早的请求"),
        "requests.newest": ("Newest requests", "最新请求"),
        "requests.ms": ("{n} ms", "{n} 毫秒"),
        "login.token": ("Admin token", "管理令牌"),
        "login.submit": ("Sign in", "登录"),
        "login.rejected": ("That token is not valid.", "令牌无效。"),
        "login.throttled": (
            "Too many wrong tokens from this address. Try again in {seconds} s.",
            "此地址输入错误令牌的次数过多。请在 {seconds} 秒后重试。",
        ),
        "login.help": (
            "codexgate logged a sign-in link with the token on its first start. To set a new "
            "token, start it with --admin-token TOKEN.",
            "codexgate 首次启动时在日志中输出了带令牌的登录链接。要设置新令牌，请使用 "
            "--admin-token TOKEN 启动。",
        ),
        "alerts.heading": ("Recent alerts", "最近告警"),
        "alerts.empty": ("No alerts yet.", "暂无告警。"),
        "alerts.test": ("Send a test alert", "发送测试告警"),
        "alerts.test_none": (
            "No webhook is set up: add one in the settings file or through the API.",
            "尚未配置 webhook：请在配置文件中或通过 API 添加。",
        ),
        "alerts.test_sent": (
            "Test alert sent: {ok} of {total} webhooks answered.",
            "测试告警已发送：{total} 个 webhook 中 {ok} 个成功。",
        ),
        "alerts.test_failed": ("{webhook}: {error}", "{webhook}：{error}"),
        # An alert reads "<account><separator><its kind's message>[, back at / resets at ...]":
        # the account is a link of its own, so the messages leave it out. {limit} is empty for
        # the seat's main limit, else its id and a space ("codex_other "): one model's limit
        # says which it is.
        "alert.separator": (": ", "："),
        "alert.threshold": (
            "{limit}{window} window at {percent}% (crossed {threshold}%)",
            "{limit}{window}窗口已用 {percent}%（超过 {threshold}%）",
        ),
        "alert.forecast": (
            "{limit}{window} window at {percent}% will run out before its reset",
            "{limit}{window}窗口已用 {percent}%，将在重置前用完",
        ),
        "alert.limit_hit": ("{limit}limit reached", "{limit}已达上限"),
        "alert.limit_reset": (
            "{limit}limit reset, usable again",
            "{limit}限额已重置，可以再次使用",
        ),
        "alert.stale": ("no new {limit}usage data", "没有新的{limit}用量数据"),
        "alert.test": ("Test alert", "测试告警"),
        "alert.back_at": (", back at {time}", "，{time} 恢复"),
        "alert.resets_at": (", resets at {time}", "，{time} 重置"),
        "severity.critical": ("Critical", "严重"),
        "severity.warning": ("Warning", "警告"),
        "severity.info": ("Info", "提示"),
        "severity.test": ("Test", "测试"),
        "instances.heading": ("Instances", "实例"),
        "instances.alive_hint": ("instances alive now", "当前存活的实例数"),
        "instances.hint": (
            "codexgate processes sharing this database. Alive: a heartbeat within the last"
            " {seconds} s. The leader does the alert evaluation, webhook delivery and retention.",
            "共用此数据库的 codexgate 进程。存活：最近 {seconds} 秒内有心跳。"
            "主实例负责告警评估、webhook 投递和数据保留清理。",
        ),
        "instances.state.leader": ("Leader", "主实例"),
        "instances.state.standby": ("Standby", "备用"),
        "instances.state.stopped": ("Stopped", "已停止"),
        "instances.state.gone": ("Gone (no heartbeat)", "已失联（无心跳）"),
        "instances.this": ("(answering this page)", "（正在响应本页）"),
        "instances.detail": (
            "pid {pid} · id {id} · version {version}",
            "进程 {pid} · id {id} · 版本 {version}",
        ),
        "instances.heartbeat": ("last heartbeat {age} ago", "最近心跳在 {age}前"),
        "instances.one": ("1 instance, on {host}", "1 个实例，运行于 {host}"),
        "missing.title": ("No such account", "没有这个账号"),
        "missing.body": (
            "This account does not exist, or it was deleted.",
            "此账号不存在，或已被删除。",
        ),
        "js.off": (
            "JavaScript is off: this page shows the numbers as they were when it loaded.",
            "JavaScript 已关闭：本页显示的是加载时的数据。",
        ),
    }
)


def negotiate(accept_language: str | None, cookie: str | None) -> str:
    """The language to answer in: the remembered choice, else Accept-Language's best, else en."""
    if cookie in LANGUAGES:
        return cookie
    best, best_q = ENGLISH, 0.0
    for part in (accept_language or "").split(",")[:20]:
        match = _RANGE.fullmatch(part)
        if match is None:
            continue
        tag, raw_q = match.groups()
        try:
            q = float(raw_q) if raw_q is not None else 1.0
        except ValueError:
            continue
        language = _language_of(tag)
        if language is not None and q > best_q:
            best, best_q = language, q
    return best


def _language_of(tag: str) -> str | None:
    """Which of ours a language range asks for: any zh (Chinese) but zh-TW/HK, or any en."""
    lowered = tag.lower()
    primary = lowered.split("-", 1)[0]
    if primary == "zh":
        return None if lowered in ("zh-tw", "zh-hk", "zh-hant") else CHINESE
    if primary == "en":
        return ENGLISH
    return None


# The page's message for each alert kind, in the page's language (the API item's `message` is
# the webhooks' English); the page script gets this map with its rules.
ALERT_MESSAGES: Final[Mapping[str, str]] = MappingProxyType(
    {kind: f"alert.{kind}" for kind in get_args(AlertKind)}
)
# What an alert's `resets_at` means, by kind: when a reached limit is back, when the window an
# alert is about resets. The other kinds do not say when.
ALERT_WHEN: Final[Mapping[str, str]] = MappingProxyType(
    {"limit_hit": "alert.back_at", "threshold": "alert.resets_at", "forecast": "alert.resets_at"}
)


def keys() -> frozenset[str]:
    """Every message key."""
    return frozenset(_CATALOG)


def catalog(language: str) -> dict[str, str]:
    """Every message of one language, for the page script."""
    column = LANGUAGES.index(language)
    return {key: texts[column] for key, texts in _CATALOG.items()}


class Translator:
    """The messages of one language; `t("key", name=...)` fills the message's fields."""

    __slots__ = ("_column", "language")

    def __init__(self, language: str) -> None:
        self.language = language
        self._column = LANGUAGES.index(language)

    def __call__(self, key: str, /, **fields: object) -> str:
        text = _CATALOG[key][self._column]
        return text.format(**fields) if fields else text

    def clock(self, at: float, now: float) -> str:
        """A moment as UTC clock time, marked so ("14:05 UTC", "Tue 09:32 UTC"); the page
        script writes it in the reader's time zone."""
        return self("clock.utc", time=clock(at, now, UTC, self("clock.weekdays").split()))

    def duration(self, seconds: float) -> str:
        """A countdown's text: the two largest units ("2h 30m", "3d 12h"), or seconds."""
        parts = duration_parts(seconds)
        return self("duration.join").join(self(f"duration.{unit}", n=n) for unit, n in parts)
