"""Training throughput vs batch size and vs number of configs; see benchmarks/README.md.

python benchmarks/throughput.py --out benchmarks/results      # the default CPU run
python benchmarks/throughput.py --help
"""

import sys

from jaxgd.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
