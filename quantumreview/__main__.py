"""`python -m quantumreview` is the `quantumreview` command."""

import sys

from quantumreview.cli import main

sys.exit(main())
