"""Build data/fashion_mnist_subset.npz from the official Fashion-MNIST files.

Usage: python scripts/build_data.py [--source DIR] [--out PATH] [--download]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from course_lib.datasets import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
