"""The digest's readers; import the module you need (this package imports none of them).

- :mod:`~newsletter.subscribers.addresses`: an address's canonical form; email-validator's home.
- :mod:`~newsletter.subscribers.tokens`: the signed confirm and unsubscribe tokens; itsdangerous's home.
- :mod:`~newsletter.subscribers.manage`: add, remove, import, and the double opt-in (request, confirm, unsubscribe).
"""
