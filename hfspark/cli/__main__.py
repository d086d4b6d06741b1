"""``python -m hfspark.cli ...``: the ``hfspark`` command."""

import sys

from hfspark.cli import main

sys.exit(main())
