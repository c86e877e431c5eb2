"""``python -m va.vidax``: serve the API (the same as ``va serve``)."""

from va.vidax.server import main

raise SystemExit(main())
