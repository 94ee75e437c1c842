"""The admin listener's pages for people: ``/status``, check history, manual drain."""

from __future__ import annotations

from agent.status.auth import AdminAuth
from agent.status.routes import add_status_routes

__all__ = ["AdminAuth", "add_status_routes"]
