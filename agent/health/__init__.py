"""Health: pure policy, the monitor that owns the snapshot, and the endpoints that read it."""
