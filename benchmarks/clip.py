"""`python -m segbench.clip`, the command's name before the generators moved to segbench.data: forwards to
`python -m segbench.data.clip`."""

import sys

from segbench.data.clip import main

if __name__ == "__main__":
    sys.exit(main())
