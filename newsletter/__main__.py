"""``python -m newsletter``: the CLI, as the ``newsletter`` command runs it."""

from newsletter.cli import main

if __name__ == "__main__":
    main()
