"""``python -m newsletter``: the CLI."""

from newsletter.cli import main

if __name__ == "__main__":  # a spawned worker process imports this module again: it must not run the CLI
    main()
