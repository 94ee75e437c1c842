"""Command line: parse arguments, call into the agent, map outcomes to exit codes (SPEC §8).

Exit codes: 0 success / clean drain, 1 cannot start, probe or drain failed, 2 invalid configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from agent import __version__
from agent.config import AgentConfig, ConfigError, ReadableSecretFile, load_config, readable_secret_files, to_public_dict

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecar-agent", description="Health, request context and metrics beside any HTTP API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c", "--config", metavar="PATH", help="TOML file (default: $AGENT_CONFIG, else ./agent.toml, else built-in defaults)"
        )
        return p

    with_config(commands.add_parser("run", help="run the agent"))
    with_config(commands.add_parser("check-config", help="validate and print the effective config, secrets masked"))
    probe = with_config(commands.add_parser("probe", help="ask a running agent (for Docker HEALTHCHECK): exit 0 on 200"))
    probe.add_argument("kind", choices=("live", "ready", "startup"))
    probe.add_argument("--url", help="full URL (default: the main listener from the config, on 127.0.0.1)")
    probe.add_argument("--timeout", type=float, default=2.0, metavar="S", help="seconds (default 2)")
    for action, does in (("drain", "readiness 503 until undrain"), ("undrain", "undo a drain made by hand")):
        control = with_config(commands.add_parser(action, help=f"POST /admin/{action} to the local admin listener: {does}"))
        control.add_argument("--url", help="admin listener URL (default: admin.listen from the config, on 127.0.0.1)")
        control.add_argument("--token", help="bearer token (default: admin.token from the config or $AGENT_ADMIN_TOKEN)")
        control.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds (default 5)")
    demo = commands.add_parser("demo", help="run the agent in front of a bundled demo app (no config, no database)")
    demo.add_argument("--port", type=int, default=8000, help="agent main port (default 8000)")
    commands.add_parser("version", help="print the version")
    return parser


def _load(path: str | None) -> AgentConfig:
    return load_config(path, os.environ)


def _mode_of(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None


def _readable_secret_files(config: AgentConfig) -> tuple[ReadableSecretFile, ...]:
    return readable_secret_files(config, _mode_of)


def _control(args: argparse.Namespace) -> int:
    from agent.admin_control import control

    try:
        is_done = control(args.command, url=args.url, token=args.token, config_path=args.config, timeout_s=args.timeout)
    except ConfigError as exc:
        print(f"sidecar-agent: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK if is_done else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"sidecar-agent {__version__}")
        return EXIT_OK
    if args.command == "probe":
        from agent.probe import probe

        return EXIT_OK if probe(args.kind, url=args.url, config_path=args.config, timeout_s=args.timeout) else EXIT_FAIL
    if args.command in ("drain", "undrain"):
        return _control(args)
    if args.command == "demo":
        from agent.demo import run_demo

        return run_demo(agent_port=args.port)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"sidecar-agent: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    exposed = _readable_secret_files(config)
    if args.command == "check-config":
        import orjson

        sys.stdout.write(orjson.dumps(to_public_dict(config), option=orjson.OPT_INDENT_2).decode() + "\n")
        for warning in exposed:
            print(f"sidecar-agent: warning: {warning}", file=sys.stderr)
        print(f"configuration OK ({config.source})", file=sys.stderr)
        return EXIT_OK
    from agent.logs import setup_logging
    from agent.server import run_server

    try:
        setup_logging(config.logging)
    except OSError as exc:
        print(f"sidecar-agent: cannot open logging.file: {exc}", file=sys.stderr)
        return EXIT_FAIL
    for warning in exposed:
        message, extra = warning.log_event()
        logging.getLogger("agent.config").warning(message, extra=extra)
    return run_server(config)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
