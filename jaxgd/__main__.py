"""``python -m jaxgd``: the ``jaxgd`` command line."""

import sys

from .cli import main

sys.exit(main())
