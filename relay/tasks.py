"""Background work that components run on a timer and stop at shutdown."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable


def every(interval: float, action: Callable[[], Awaitable[None]], name: str) -> asyncio.Task:
    """Run ``action`` every ``interval`` seconds until the task is stopped."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            await action()

    return asyncio.create_task(loop(), name=name)


async def stop(task: asyncio.Task | None) -> None:
    """Cancel ``task`` and wait until it has ended (an action in progress is cut short)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
