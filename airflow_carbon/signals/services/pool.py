"""One client per service, connection and event loop, shared by a process: a triggerer reuses tokens and sockets."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Any

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def client_for(key: Hashable, factory: Callable[[], Any]) -> Any:
    """The client for ``key`` on the running loop, made by ``factory`` the first time."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in clients:
        clients[key] = factory()
    return clients[key]


async def aclose_clients() -> None:
    """Close this loop's clients: a synchronous caller's loop ends with its read."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()
