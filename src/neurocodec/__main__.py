"""``python -m neurocodec``: the command line (:mod:`neurocodec.cli`)."""

import sys

from neurocodec.cli import main

sys.exit(main())
