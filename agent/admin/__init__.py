"""The admin listener (SPEC §2): its own small HTTP server, adapters over ``agent.rules``, the admin routes.

``http`` is the server (llhttp, keep-alive, deadlines) and its request and response; ``app`` the
application every request passes (ids, access log, errors, the change gate of ``auth``, the
response ``hooks``); ``health``, ``metrics``, ``log_level`` and ``status`` its routes.
"""
