"""The ``aae-anomaly`` click group, :func:`main`, and how every command reports errors.

Results go to standard output and nothing else does, so output can be piped; progress,
notes and errors go to standard error. Bad input or usage exits with status 2 and one
``Error: ...`` line; status 1 means a bug.

The commands live in the modules beside this one, each registering on :func:`main`;
``aae_anomaly.cli`` imports them all.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

import click

from .._version import __version__
from ..errors import AAEAnomalyError

# Expected failures caused by the input, the environment or the plugins installed; any
# other exception is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, AAEAnomalyError)


class BadInput(click.ClickException):
    """Bad input: one ``Error: ...`` line on standard error and exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected errors into :class:`BadInput`, and warnings into one-line notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            yield
        except click.ClickException:
            raise
        except USER_ERRORS as exc:
            raise BadInput(str(exc) or type(exc).__name__) from None
        finally:
            for warning in caught:
                click.echo(f"Warning: {' '.join(str(warning.message).split())}", err=True)


# click 8.2+ raises this for a bare command that needs arguments; older click prints help
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """A group whose usage errors (an unknown option, a bad value) are one line on standard
    error with exit status 2, like every other bad input, instead of click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except NO_ARGS_IS_HELP as exc:
            exc.show()  # the help text, as click prints it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(__version__, prog_name="aae-anomaly")
def main() -> None:
    """Find anomalies with adversarial autoencoders.

    Train on a file of normal rows with `fit`, keep the model as one file, and `score`
    or `evaluate` new rows with it. DATA is a .csv (with a header line), .parquet, .npy
    or .npz file, or a dataset plugin spec such as synthetic:n=2000,anomalies=0.05.
    """
