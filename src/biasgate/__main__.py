"""``python -m biasgate``: the same as the ``biasgate`` command."""

import sys

from biasgate.cli import main

sys.exit(main())
