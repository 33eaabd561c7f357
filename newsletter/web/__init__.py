"""The web site on Starlette (its only home): feeds, pages, subscribe, the digest archive. Answers requests; no SQL.

:func:`create_app` builds the application; :func:`serve` runs it on ``[web] host`` and ``port``.
"""

from __future__ import annotations

from newsletter.web.app import create_app, serve

__all__ = ["create_app", "serve"]
