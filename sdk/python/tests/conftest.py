"""The tests exercise this tree's `src/`, whatever copy of the SDK is installed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
