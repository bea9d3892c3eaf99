"""`python -m monitor` runs the command line."""

from monitor.cli import main

# Guarded: a match worker process (prepare.py) starts by importing the parent's main module.
if __name__ == "__main__":
    raise SystemExit(main())
