"""WebSocket echo for the proxy benchmark: frames (pure), an echo server and a round-trip load client.

Raw asyncio protocols on uvloop rather than a WebSocket library: the server and the client share
the load CPU with each other, so they must cost far less per message than the proxy under test.
"""
