"""``python -m vibetensor.observe merge|analyze DIR`` (same as ``vt-trace``)."""
import sys

from .cli import main

sys.exit(main())
