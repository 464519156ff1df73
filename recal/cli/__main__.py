"""``python -m recal.cli``: the ``recal`` command."""

from recal.cli import main

main()
