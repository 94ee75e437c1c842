"""The admin listener (SPEC §2): aiohttp adapters over ``agent.rules`` and the admin routes.

``app`` builds the application; ``context``, ``access_log`` and ``errors`` are its middlewares,
``hooks`` its response hooks, ``auth`` the token; ``health``, ``metrics`` and ``status`` its routes.
"""
