"""`python -m segbench.train_reference`, the command's name before the generators moved to segbench.data: forwards to
`python -m segbench.data.train_reference`."""

import sys

from segbench.data.train_reference import main

if __name__ == "__main__":
    sys.exit(main())
