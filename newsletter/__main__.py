"""``python -m newsletter``: the CLI."""

from newsletter.cli import main

main()
