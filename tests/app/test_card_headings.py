"""A card's headings go one level below the section it is in: its name an h3 under the overview's
"Accounts" h2 and an h2 under an account page's h1, an extra limit's name one level lower, in the
rendered card and in the <template> the page script clones for new cards and limits."""

from __future__ import annotations

import re
import time

from aiohttp.test_utils import TestServer

from codexgate.core.models import LimitReport, Snapshot, UsageReport, Window
from codexgate.keys import STORE
from tests.helpers.admin_client import Admin
from tests.helpers.builders import seat_identity
from tests.helpers.gateway import app_of


async def page(admin: Admin, path: str) -> str:
    answer = await admin.get(path)
    assert answer.status == 200, answer.body
    return answer.body.decode()


def heading_levels(text: str, css_class: str) -> set[int]:
    return {int(level) for level in re.findall(rf'<h([1-6]) class="{css_class}"', text)}


async def test_card_and_limit_headings_follow_the_page_outline(
    server: TestServer, admin: Admin
) -> None:
    now = time.time()
    windows = (Window("primary", "5h", "length", 30.0, 300, int(now + 3600)),)
    limits = (LimitReport("codex", None, windows), LimitReport("codex_other", "Other", windows))
    snapshot = Snapshot(seat_identity("seat_a"), now, "headers", UsageReport(limits=limits), 200)
    await app_of(server)[STORE].record([snapshot])
    account_id = (await app_of(server)[STORE].accounts())[0].id

    overview = await page(admin, "")
    assert heading_levels(overview, "card-name") == {3}
    assert heading_levels(overview, "limit-name") == {4}
    assert re.search(r'<h2 id="accounts-heading"', overview)

    account = await page(admin, f"accounts/{account_id}")
    assert re.search(r'<h1 class="page-title"', account)
    assert heading_levels(account, "card-name") == {2}
    assert heading_levels(account, "limit-name") == {3}
    # The extra limit's name is shown, under the card's h2.
    assert '<h3 class="limit-name" data-field="limit-name">Extra limit: Other</h3>' in account
