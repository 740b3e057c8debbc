"""MLproject entry point `monitor` (generated): see `cmle monitor --help` for its parameters."""

import sys
from pathlib import Path

# Importable without `pip install -e .`, as long as the dependencies are installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cmle.cli import entrypoint  # noqa: E402

if __name__ == "__main__":
    entrypoint("monitor")
