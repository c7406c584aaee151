"""``python -m service.sandbox``: the sandbox without the ``imgsweep`` wrapper (same flags)."""

import sys

from service.sandbox.cli import main

sys.exit(main())
