"""`python -m mcfleet.bundle [--out DIR] [--force]`: build (or reuse) the agent bundle."""

import sys

from mcfleet.bundle.build import main

sys.exit(main())
