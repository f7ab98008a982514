"""Training throughput vs batch size and vs number of configs; see benchmarks/README.md.

python benchmarks/throughput.py --out benchmarks/results      # the default CPU run
python benchmarks/throughput.py --help

The harness lives in ``benchmarks/harness/`` (this folder is on ``sys.path`` when the
script runs), not in the installed ``jaxgd`` package.
"""

import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
