"""``python -m service`` is the same CLI as the ``imgsweep`` console script."""

import sys

from service.cli import main

sys.exit(main())
