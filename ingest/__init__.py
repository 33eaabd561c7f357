"""Getting content in: sources, fetching, parsing, normalizing, dedupe into stories, and the store.

Nothing here imports :mod:`newsletter`; data flows one way (see DESIGN.md).
"""
