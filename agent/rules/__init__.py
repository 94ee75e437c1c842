"""Pure request rules both listeners derive from: ids, trace context, security headers, CORS,
error documents and the access-log event. No I/O, no asyncio.

The main listener pre-encodes bytes from these rules at start; the admin listener
(``agent.admin.app``) applies them to each response's header list. A test that pins a rule runs it against both listeners.
"""
