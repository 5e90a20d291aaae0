"""`python -m carsketch ...`: see carsketch.cli."""

import sys

from carsketch.cli import main

sys.exit(main())
