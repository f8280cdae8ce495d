"""``python -m dih.tools.gpu_check prepare|run``: the command line's entry (main() parses it)."""

import sys

from .steps import main

sys.exit(main())
