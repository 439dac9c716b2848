"""`python -m fasttcp` is the `fasttcp` command."""
from fasttcp.cli import main

raise SystemExit(main())
