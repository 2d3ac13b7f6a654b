"""python -m maskwatch.cli"""

import sys

from . import main

sys.exit(main())
