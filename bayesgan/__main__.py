"""``python -m bayesgan``: the same as the ``bayesgan`` command."""

import sys

from .cli import main

sys.exit(main())
