"""`python -m fasttcp` is the `fasttcp` command."""
from fasttcp.cli.main import main

# guarded so that importing the module (stubtest, pydoc) does not run the command
if __name__ == "__main__":
    raise SystemExit(main())
