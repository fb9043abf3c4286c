"""The ``edgesam`` command.

Each subcommand lives in ``edgesam_edge/commands/<name>.py`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Command
modules import nothing heavy at module level, so ``edgesam --help`` is fast
and works without torch or any backend installed.

Errors a user causes (:class:`~edgesam_edge.errors.EdgeSamError`), and errors of
the system the command runs on (``OSError``: disk full, permission denied, a
read-only SD card), print one line ``error: ...`` on stderr and exit with status
2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional, Sequence

from . import __version__
from .errors import EdgeSamError, first_line

logger = logging.getLogger("edgesam_edge")

#: Subcommand name -> module implementing it.
COMMANDS = {
    "demo": "edgesam_edge.commands.demo",
    "segment": "edgesam_edge.commands.segment",
    "export": "edgesam_edge.commands.export",
    "info": "edgesam_edge.commands.info",
    "weights": "edgesam_edge.commands.weights",
    "calibrate": "edgesam_edge.commands.calibrate",
    "build": "edgesam_edge.commands.build",
    "live": "edgesam_edge.commands.live",
    "bench": "edgesam_edge.commands.bench",
    "tune": "edgesam_edge.commands.tune",
    "train-demo": "edgesam_edge.commands.train_demo",
}

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every installed subcommand."""
    parser = _Parser(prog="edgesam", description="EdgeSAM on edge devices: export, segment, benchmark, live.")
    parser.add_argument("--version", action="version", version=f"edgesam-edge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    """Log to stderr at INFO (DEBUG with --debug, WARNING with --quiet)."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("edgesam_edge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``edgesam`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    setup_logging(args.debug, args.quiet)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args._run(args) or 0)
    except EdgeSamError as exc:
        if args.debug:
            logger.exception("edgesam %s failed", args.command)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # disk full, permission denied, ...: the system's answer, not a bug
        if args.debug:
            logger.exception("edgesam %s failed", args.command)
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: ``'path': No space left on device (errno 28)``."""
    what = exc.strerror or first_line(exc)
    if exc.errno and exc.strerror:
        what += f" (errno {exc.errno})"
    names = [repr(str(n)) for n in (exc.filename, exc.filename2) if n is not None]
    return (" -> ".join(names) + ": " if names else "") + what.replace("\n", " ")


def entry_point() -> None:  # console_scripts target
    sys.exit(main())


def parse_floats(text: str, n: Sequence[int], what: str) -> List[float]:
    """Parse ``"1,2,3"`` into floats, accepting any count in ``n``; EdgeSamError otherwise."""
    parts = [p for p in text.replace(" ", "").split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise EdgeSamError(f"{what} {text!r} is not comma-separated numbers") from None
    if len(vals) not in n:
        expected = " or ".join(str(k) for k in n)
        raise EdgeSamError(f"{what} {text!r} has {len(vals)} numbers, expected {expected}")
    return vals
