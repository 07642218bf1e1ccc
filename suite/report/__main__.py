"""`python -m suite.report`: the command line of suite.report.cli."""
import sys

from suite.report.cli import main

sys.exit(main())
