import sys

from hmljax.cli import main

sys.exit(main())
