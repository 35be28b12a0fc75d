"""``python -m litevault``: the command line."""

from ._cli import main

main()
