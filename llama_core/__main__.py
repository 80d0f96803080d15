"""``python -m llama_core``: see lab/cli."""

import sys

from .lab.cli import main

sys.exit(main())
