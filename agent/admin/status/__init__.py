"""The admin listener's pages for people: ``/status``, check history, manual drain."""

from __future__ import annotations

from agent.admin.status.routes import add_status_routes

__all__ = ["add_status_routes"]
