"""aiohttp middlewares and response hooks, each independent of the others and of health/metrics."""
