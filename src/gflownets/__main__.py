"""`python -m gflownets ...` (as torchrun launches it: `torchrun --nproc_per_node N -m gflownets train ...`)."""

import sys

from gflownets.cli import main

sys.exit(main())
