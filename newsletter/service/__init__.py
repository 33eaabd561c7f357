"""The long-running service (``newsletter run``); import the module you need (this package imports none of them).

- :mod:`~newsletter.service.service`: the steps (ingest, publish, digest), one pass of them, and the run loop.
- :mod:`~newsletter.service.scheduler`: when the steps run; APScheduler's home. Knows the service only as a protocol.
- :mod:`~newsletter.service.lock`: the single-instance lock on a SQLite database.
"""
