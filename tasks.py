"""Set up and run cmc-kg with nothing but Python 3.11 and pip: `python3 tasks.py serve` or `python3 tasks.py test`.

Both create .venv/ and install the project into it first (skipped when pyproject.toml has not changed).
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def setup() -> None:
    if not (BIN / "python").exists():
        print("creating .venv", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    stamp = VENV / ".cmc-kg-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        print("installing cmc-kg and its dependencies into .venv", file=sys.stderr)
        subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"], check=True)
        stamp.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test", "setup"):
        print(__doc__, file=sys.stderr)
        return 2
    setup()
    command, rest = argv[0], argv[1:]
    if command == "serve":
        build = subprocess.run([str(BIN / "cmc-kg"), "build"], cwd=ROOT)
        if build.returncode != 0 and not (ROOT / "build" / "cmc-kg.nq").exists():
            return build.returncode
        return subprocess.run([str(BIN / "cmc-kg"), "serve", *rest], cwd=ROOT).returncode
    if command == "test":
        return subprocess.run([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
