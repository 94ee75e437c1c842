"""The admin listener's access log: one line per request, the event of ``agent.rules.access``.

The same keys as the main listener (SPEC §9), ``upstream_ms`` always null: the admin listener
proxies nothing. Paths in ``logging.skip_paths`` (probes, scrapes) are not logged
(:class:`agent.admin.app.AdminApp` decides). The line goes through ``logging`` (the
``agent.access`` logger), like the main listener's when it writes to a file, so the log's
handlers render it.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.rules.access import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)

# Written by the log renderer itself (agent.logs.record_fields).
_RENDERED_KEYS = frozenset({"timestamp", "level", "logger", "message"})


def write_access_event(event: dict[str, Any]) -> None:
    """One event through ``logging``: its fixed keys come from the record, the rest as fields."""
    log.info(event["message"], extra={k: v for k, v in event.items() if k not in _RENDERED_KEYS})
