"""GET api/v1/instances: the codexgate processes sharing the database, which are alive, and which
one does the singleton work (services/instances.py keeps the heartbeats and the lease)."""

from __future__ import annotations

from aiohttp import web

from codexgate.api.common import json_response
from codexgate.api.schemas import InstanceList, instances_json
from codexgate.keys import INSTANCE
from codexgate.services.instances import Coordinator


async def instance_list(coordinator: Coordinator) -> InstanceList:
    """Every instance's heartbeat row as this instance sees them (the API's and the page's)."""
    lease = coordinator.lease
    return instances_json(
        await coordinator.instances(),
        this_id=coordinator.id,
        holder=None if lease is None else lease.holder,
        alive=coordinator.alive,
    )


async def list_instances(request: web.Request) -> web.Response:
    """GET instances: every instance seen lately, newest start first, and the leader."""
    return json_response(await instance_list(request.app[INSTANCE]))
