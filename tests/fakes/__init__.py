"""In-memory stand-ins for the engine's collaborators, for tests of its decisions.

They keep the rules the real store enforces (fencing, the state graph, append-only history),
so a decision the runner gets wrong fails here as it would against PostgreSQL; the store's own
behaviour stays tested against PostgreSQL.
"""
