"""What an account is called: its display name, else its email, else "Account <id>"."""

from __future__ import annotations

from codexgate.api.schemas import account_json, account_row_json
from codexgate.core.accounts import DEFAULT_TITLE, account_title, default_title
from codexgate.core.rows import AccountRow
from codexgate.dashboard.i18n import CHINESE, ENGLISH, Translator


def _row(account_id: int, name: str | None, email: str | None) -> AccountRow:
    return AccountRow(
        id=account_id,
        account_key=f"token:{account_id:064x}",
        chatgpt_account_id=None,
        chatgpt_user_id=None,
        display_name=name,
        email=email,
        plan_type="plus",
        token_fingerprint="ab" * 32,
        first_seen_at=1.0,
        last_seen_at=2.0,
    )


def test_the_name_wins_then_the_email_then_a_default_by_id() -> None:
    assert account_title(3, "work", "a@example.com") == "work"
    assert account_title(3, None, "a@example.com") == "a@example.com"
    assert account_title(3, None, None) == "Account 3"
    assert account_title(3, "", "") == "Account 3"  # empty is no name


def test_defaults_are_distinct_and_stable() -> None:
    titles = {default_title(account_id) for account_id in range(1, 200)}
    assert len(titles) == 199
    assert default_title(7) == DEFAULT_TITLE.format(id=7) == "Account 7"


def test_the_page_has_the_default_in_both_languages() -> None:
    english = Translator(ENGLISH)("card.default_title")
    chinese = Translator(CHINESE)("card.default_title")
    assert account_title(4, None, None, english) == "Account 4"
    assert account_title(4, None, None, chinese) == "账号 4"
    assert english == DEFAULT_TITLE  # the REST API, CLI and alerts say what the English page says


def test_the_rest_shapes_carry_the_title() -> None:
    assert account_json(_row(5, None, None), (), {})["title"] == "Account 5"
    assert account_json(_row(5, None, "e@example.com"), (), {})["title"] == "e@example.com"
    assert account_row_json(_row(5, "ci", None))["title"] == "ci"
