"""The auth middleware alone: what it costs per request, for a proxied and an admin request."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from codexgate.keys import ADMIN_AUTH
from codexgate.security import AdminAuth, Sessions, auth_middleware, hash_token
from codexgate.storage import open_storage

from .protocol import RESPONSES_PATH

PREFIX: Final = "codexgate"
ADMIN_TOKEN: Final = "bench-admin-token-0123456789abcdef"
BATCHES: Final = 5
CALLS: Final = 20_000  # per batch; a batch takes tens of milliseconds
WARMUP_CALLS: Final = 2_000


@dataclass(frozen=True, slots=True)
class AuthCase:
    """A request the middleware is timed on."""

    name: str
    method: str
    path: str
    headers: Mapping[str, str]


CASES: Final = (
    AuthCase("proxied request", "POST", RESPONSES_PATH, {"Host": "127.0.0.1:8080"}),
    AuthCase(
        "admin API, bearer token",
        "GET",
        f"/{PREFIX}/api/v1/accounts",
        {"Host": "127.0.0.1:8080", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    ),
)


@dataclass(frozen=True, slots=True)
class AuthCost:
    """The median of BATCHES batches' cost per call for one case."""

    case: AuthCase
    calls: int
    micros_per_call: float


async def _cost(app: web.Application, case: AuthCase) -> AuthCost:
    """Await the middleware CALLS times on one request, BATCHES times over, after a warm-up."""
    middleware = auth_middleware(PREFIX)
    request = make_mocked_request(case.method, case.path, headers=case.headers, app=app)
    answer = web.Response(text="ok")  # made once: the figure is the middleware's, not a handler's

    async def _answer(request: web.Request) -> web.StreamResponse:
        return answer

    for _ in range(WARMUP_CALLS):
        response = await middleware(request, _answer)
    if response.status != 200:
        raise RuntimeError(f"the middleware refused the {case.name}: {response.status}")
    batches = []
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(CALLS):
            await middleware(request, _answer)
        batches.append((time.perf_counter() - started) / CALLS * 1e6)
    return AuthCost(case, CALLS * BATCHES, statistics.median(batches))


async def auth_costs() -> list[AuthCost]:
    """Every case, with the admin token set as codexgate sets it from --admin-token."""
    with tempfile.TemporaryDirectory(prefix="codexgate-bench-auth-") as folder:
        store = await open_storage(Path(folder) / "auth.db")
        try:
            app = web.Application()
            app[ADMIN_AUTH] = AdminAuth(
                token_sha256=hash_token(ADMIN_TOKEN), sessions=Sessions(store)
            )
            costs = []
            for case in CASES:
                cost = await _cost(app, case)
                print(f"  auth middleware: {auth_line(cost)}", flush=True)
                costs.append(cost)
        finally:
            await store.close()
    return costs


def auth_line(cost: AuthCost) -> str:
    """One case's figure."""
    return (
        f"{cost.case.name} ({cost.case.method} {cost.case.path}): "
        f"{cost.micros_per_call:.2f} µs per call (median of {BATCHES} batches of {CALLS:,})"
    )
