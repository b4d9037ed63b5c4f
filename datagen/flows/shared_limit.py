"""One endpoint, many runs: a cap on teacher requests in flight across every flow run that talks to
the same endpoint host, held by Prefect as a global concurrency limit.

Each client keeps its own --max-concurrency; with `teacher.shared_limit: N` (or DATAGEN_SHARED_LIMIT)
every HTTP attempt also holds one slot of the limit `datagen-teacher-<host>[-<port>]` for as long
as the request is on the wire. The limit is created with N slots on first use; one that already
exists keeps the size it has (`prefect gcl update` changes it for every run at once), and a run
says so when its N differs. Slots live on the Prefect server, so the runs must share one
(PREFECT_API_URL; a deployment's worker does): each run of the CLI's temporary server would have a
limit of its own, which is refused. Each slot costs two API calls (acquire, release) besides the
request, so it is off by default.
"""
from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from typing import AsyncIterator
from urllib.parse import urlsplit

from datagen.errors import DatagenError

log = logging.getLogger("datagen.teacher")


def limit_name(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = (parts.hostname or "endpoint").lower()
    tail = f"-{parts.port}" if parts.port else ""
    return "datagen-teacher-" + re.sub(r"[^a-z0-9-]+", "-", host + tail).strip("-")


class SharedLimit:
    def __init__(self, base_url: str, slots: int):
        self.name, self.slots = limit_name(base_url), slots
        self._ready = False

    async def ensure(self) -> None:
        """Create the limit if it is missing; refuse a run without a shared Prefect server."""
        if self._ready:
            return
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            raise DatagenError("teacher.shared_limit: needs a Prefect server shared by the runs it caps; set "
                               "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after `prefect server start`)")
        async with get_client() as client:
            try:
                have = await client.read_global_concurrency_limit_by_name(self.name)
            except ObjectNotFound:
                try:
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=self.name, limit=self.slots, active=True))
                    log.info("created the global concurrency limit %s with %d slots", self.name, self.slots)
                except ObjectAlreadyExists:       # another run created it first
                    pass
            else:
                if have.limit != self.slots:
                    log.warning("global concurrency limit %s has %d slots, not the %d this run asked for; "
                                "it is shared, so it keeps its size (change it with: prefect gcl update %s "
                                "--limit N)", self.name, have.limit, self.slots, self.name)
        self._ready = True

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        from prefect.concurrency.asyncio import concurrency

        await self.ensure()
        async with concurrency(self.name, occupy=1, strict=True):
            yield
