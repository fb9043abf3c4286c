"""``python -m edgesam_edge`` runs the ``edgesam`` command."""

from .cli import entry_point

entry_point()
