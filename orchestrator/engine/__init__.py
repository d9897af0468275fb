"""The engine: the machine built from `states`, the steps, the runner, leases and crash points.

It drives one checkout through Violet under a lease; the front door (`api`) and the jobs
(`recovery`, `verify`) use it, and it uses `states`, `violet` and `store` only.
"""
