"""Getting content out: everything after the store. Data flows one way here: store -> publish / digest / web.

- :mod:`newsletter.cli`: the ``newsletter`` command; arguments in, one call, tables or JSON out.
- :mod:`newsletter.status`: the operator's status view, gathered from the store.
- :mod:`newsletter.render`: the one jinja2 Environment, for web pages and emails.
- :mod:`newsletter.publish`: the feed documents (Atom, RSS, JSON Feed) and the published folder.
- :mod:`newsletter.digest`: the weekly digest: select, compose, transports, send, and the job that runs them.
- :mod:`newsletter.subscribers`: addresses, signed tokens, and managing subscribers (the double opt-in).
- :mod:`newsletter.web`: the Starlette site: feeds, pages, subscribe, the digest archive.
- :mod:`newsletter.service`: ``newsletter run``: the steps, the scheduler, the single-instance lock.
"""
