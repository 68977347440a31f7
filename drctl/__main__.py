"""Entry point of the command line: python -m drctl COMMAND ...

Exit codes: 0 done, 1 done with a failing result, 2 could not run.
"""

import sys

from drctl.cli import main

if __name__ == "__main__":
    sys.exit(main())
