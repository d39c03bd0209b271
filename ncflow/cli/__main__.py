"""`python -m ncflow.cli ...`, as the GPU benchmarks call it."""

import sys

from ncflow.cli import main

sys.exit(main())
