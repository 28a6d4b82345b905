-- Webhooks added through the API may also be Telegram, Feishu/Lark, DingTalk, WeCom and ntfy
-- (email stays in the settings file, with its SMTP credentials). SQLite cannot change a CHECK
-- constraint, so the table is rebuilt with its rows, ids included.
CREATE TABLE webhooks_new (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL UNIQUE,
    format     TEXT NOT NULL CHECK (format IN (
        'json', 'slack', 'discord', 'telegram', 'feishu', 'dingtalk', 'wecom', 'ntfy'
    )),
    name       TEXT,
    created_at REAL NOT NULL
);
INSERT INTO webhooks_new (id, url, format, name, created_at)
    SELECT id, url, format, name, created_at FROM webhooks;
DROP TABLE webhooks;
ALTER TABLE webhooks_new RENAME TO webhooks;
