"""`python -m ringgen` is the `ringgen` command."""

from ringgen.cli import main

raise SystemExit(main())
