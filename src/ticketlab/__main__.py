"""`python -m ticketlab` is the `ticketlab` command."""

import sys

from ticketlab.cli import main

sys.exit(main())
