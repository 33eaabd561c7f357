"""The web endpoints, on Starlette served by uvicorn (the only home of both): feeds, pages, and the app that joins them.

:func:`create_app` builds the application; :func:`serve` runs it on ``[web] host`` and ``port``.
"""

from __future__ import annotations

from newsletter.web.app import create_app, serve

__all__ = ["create_app", "serve"]
