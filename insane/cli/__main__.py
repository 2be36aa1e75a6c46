"""``python -m insane.cli``: the ``insane`` command."""

import sys

from insane.cli import main

sys.exit(main())
