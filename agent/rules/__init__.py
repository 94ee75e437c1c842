"""Pure request rules both listeners derive from: ids, trace context, security headers, CORS,
error documents and the access-log event. No I/O, no aiohttp, no asyncio.

The main listener pre-encodes bytes from these rules at start; the admin listener's aiohttp hooks
apply them to ``response.headers``. A test that pins a rule runs it against both listeners.
"""
