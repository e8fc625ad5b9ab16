"""The ``w2vtk`` command line: a thin Typer shell over the library.

Each module in :mod:`w2vtk.commands` defines ``register(app, prep_app)`` and adds its
subcommands; a command parses options and calls one importable library function.  Heavy imports
(torch, flashlight) happen inside the command functions so ``w2vtk --help`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from w2vtk import __version__
from w2vtk.errors import W2vtkError

app = typer.Typer(
    name="w2vtk",
    help="wav2vec 1.0 toolkit: prep -> pretrain -> extract -> train-am -> decode -> score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
prep_app = typer.Typer(
    help="Data preparation: corpora -> Kaldi data dirs, data-dir tools, token sets (lang), LMs (lm).",
    no_args_is_help=True,
)
app.add_typer(prep_app, name="prep")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"w2vtk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """w2vtk: Kaldi-style recipes for wav2vec 1.0."""


# Pipeline order for --help listings; modules not named here follow alphabetically.
_ORDER = ["prep_timit", "prep_wsj", "prep_librispeech", "prep_mini", "prep_data", "prep_lang", "prep_lm",
          "pretrain", "extract", "train_am", "decode", "score", "results", "report", "export_fairseq"]


def _register_commands() -> None:
    import w2vtk.commands as pkg

    def rank(info) -> tuple:
        return (_ORDER.index(info.name) if info.name in _ORDER else len(_ORDER), info.name)

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=rank):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"w2vtk.commands.{info.name}")
        module.register(app, prep_app)


_register_commands()


def _hide_flag_types() -> None:
    """Typer >= 0.24 labels every on/off flag ``<bool>`` in --help, as if it took a value; a flag
    takes none, so its type column stays empty (as in click and Kaldi's option listings)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover (older Typer: nothing to hide)
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # Typer < 0.24 prints no type label for flags: nothing to hide
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False):
            return None
        return shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, turning W2vtkError into one line and exit 1."""
    try:
        app(args=argv, standalone_mode=True)
    except W2vtkError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
    except OSError as err:
        # an I/O failure outside w2vtk's own checks (permission denied, read-only file system,
        # a full disk below a library): one line naming the file, not a traceback
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        typer.echo(f"error: {where}{err.strerror or err}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
