"""`python -m suite.bench`: the command of suite/bench/cli.py."""
import sys

from suite.bench.cli import main

sys.exit(main())
