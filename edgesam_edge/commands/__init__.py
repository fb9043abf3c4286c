"""One module per ``edgesam`` subcommand (see :mod:`edgesam_edge.cli`)."""
