#!/usr/bin/env python3
"""One entry point that needs nothing but Python 3.11+.

python3 dev.py serve     set up .venv if needed, then run the API with its worker
python3 dev.py test      set up .venv if needed, then run the whole test suite
python3 dev.py <cmd>     any other `rewards` command, e.g. `python3 dev.py rules check FILE`

After setting up, dev.py becomes the command it runs (``os.execv``): same PID, same signals.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing dependencies ...", flush=True)
    subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            ".[dev]",
        ],
        cwd=ROOT,
        check=True,
    )
    STAMP.write_text(wanted)


def main(argv: list[str]) -> None:
    ensure_venv()
    command = argv[0] if argv else "serve"
    if command == "serve":
        args = [str(BIN / "rewards"), "serve", "--with-worker", "--with-sandbox", *argv[1:]]
    elif command == "test":
        args = [str(BIN / "python"), "-m", "pytest", *argv[1:]]
    else:
        args = [str(BIN / "rewards"), *argv]
    # Hand this process over to the command (exec): stopping dev.py's PID, by Ctrl-C or
    # SIGTERM, stops the command itself, and with it the server's worker, sandbox and Redis.
    sys.stdout.flush()
    os.chdir(ROOT)
    os.execv(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
