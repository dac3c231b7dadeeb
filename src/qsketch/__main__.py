"""``python -m qsketch`` runs the ``qsketch`` command."""

import sys

from qsketch.cli import main

sys.exit(main())
