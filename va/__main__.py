"""Entry point for ``python -m va``."""

from va.cli import main

raise SystemExit(main())
