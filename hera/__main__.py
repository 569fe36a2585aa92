"""``python -m hera`` runs the command line."""

from hera.cli import main

raise SystemExit(main())
