"""``sidecar-agent demo``: the agent in front of a small in-memory "tracker" app, no setup needed.

The demo app behaves like the reference FastAPI service: ``/api/v1/plans`` with FastAPI-shaped
errors (``{"detail": ...}``, 404 and 422) and a ``/health`` the agent's upstream check probes.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from typing import Any

from aiohttp import web

from agent.config import build_config
from agent.logs import setup_logging
from agent.server import Server, run_with_best_loop

PLANS_KEY = web.AppKey("plans", dict)


def make_demo_app() -> web.Application:
    app = web.Application()
    app[PLANS_KEY] = {}

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def list_plans(request: web.Request) -> web.Response:
        return web.json_response(list(request.app[PLANS_KEY].values()))

    async def create_plan(request: web.Request) -> web.Response:
        try:
            data: Any = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            return web.json_response(
                {"detail": [{"loc": ["body", "name"], "msg": "field required", "type": "value_error.missing"}]}, status=422
            )
        plan = {"id": str(uuid.uuid4()), "name": data["name"], "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        request.app[PLANS_KEY][plan["id"]] = plan
        return web.json_response(plan, status=201)

    async def get_plan(request: web.Request) -> web.Response:
        plan = request.app[PLANS_KEY].get(request.match_info["plan_id"])
        if plan is None:
            return web.json_response({"detail": "Plan not found"}, status=404)
        return web.json_response(plan)

    async def delete_plan(request: web.Request) -> web.Response:
        if request.app[PLANS_KEY].pop(request.match_info["plan_id"], None) is None:
            return web.json_response({"detail": "Plan not found"}, status=404)
        return web.Response(status=204)

    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/plans", list_plans)
    app.router.add_post("/api/v1/plans", create_plan)
    app.router.add_get("/api/v1/plans/{plan_id}", get_plan)
    app.router.add_delete("/api/v1/plans/{plan_id}", delete_plan)
    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_demo(*, agent_port: int = 8000, admin_port: int = 9464) -> int:
    app_port = _free_port()
    config = build_config(
        {
            "server": {"listen": f"127.0.0.1:{agent_port}", "drain_delay_s": 0.5},
            "admin": {"listen": f"127.0.0.1:{admin_port}"},
            "upstream": {"url": f"http://127.0.0.1:{app_port}"},
            "health": {"interval_s": 2.0, "public_details": "full"},
            "checks": {"memory": {"type": "memory", "critical": False}},
        },
        {},
        "demo",
    )
    setup_logging(config.logging)

    async def print_help(server: Server) -> None:
        base = f"http://127.0.0.1:{agent_port}"
        admin = f"http://127.0.0.1:{admin_port}"
        print(
            f"""
sidecar-agent demo: the agent on {base} in front of a demo app on 127.0.0.1:{app_port}
Try:
  curl -i {base}/health/ready
  curl -s {base}/health | python3 -m json.tool
  curl -i -X POST {base}/api/v1/plans -H 'Content-Type: application/json' -d '{{"name": "launch"}}'
  curl -i {base}/api/v1/plans/00000000-0000-0000-0000-000000000000
  curl -i -H 'X-Request-ID: my-trace-123' {base}/api/v1/plans
  curl -s {admin}/health | python3 -m json.tool
Ctrl-C drains and stops.
""",
            file=sys.stderr,
            flush=True,
        )

    async def main() -> int:
        runner = web.AppRunner(make_demo_app(), handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", app_port).start()
        try:
            return await Server(config, on_started=print_help).serve()
        finally:
            await runner.cleanup()

    return run_with_best_loop(main)
