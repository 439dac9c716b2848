"""`python -m fasttcp` is the `fasttcp` command."""
from fasttcp.cli.main import main

raise SystemExit(main())
