"""``python -m nba.cli``: the same as the ``nba`` command."""

from nba.cli.entry import main

main()
