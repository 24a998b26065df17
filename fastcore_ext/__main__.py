"""`python -m fastcore_ext ...` is the `fastcore-ext` command (fastcore_ext.cli)."""

import sys

from fastcore_ext.cli import main

sys.exit(main())
