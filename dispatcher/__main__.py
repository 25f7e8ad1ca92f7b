"""`python -m dispatcher`: the same as the `dispatcher` command."""

import sys

from dispatcher.cli import main

sys.exit(main())
