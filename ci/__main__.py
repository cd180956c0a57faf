"""`python -m ci plan|registry|timeout|impact`: see `ci.settings`."""

import sys

from ci.settings import main

sys.exit(main())
