"""``python -m alignrl``: the same command line as the ``alignrl`` script (used by submitted Ray jobs)."""

import sys

from alignrl.cli import main

sys.exit(main())
