"""`python -m segbench.shapes`, the command's name before the generators moved to segbench.data: forwards to
`python -m segbench.data.shapes`."""

import sys

from segbench.data.shapes import main

if __name__ == "__main__":
    sys.exit(main())
