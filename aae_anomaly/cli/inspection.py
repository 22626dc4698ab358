"""Looking things up: ``info`` on what a model file holds, ``plugins`` on what is
installed."""

from __future__ import annotations

import json

import click

from ..io.modelfile import read_header
from ..plugin_system.manager import (
    LOAD_PLUGINS_VARIABLE,
    distributions_to_load,
    get_plugin_manager,
)
from .app import main, user_errors
from .options import json_option
from .reports import (
    describe_environment,
    describe_model,
    format_environment,
    format_model,
    format_table,
    plugin_rows,
)


@main.command()
@click.argument("model", required=False)
@json_option("The full contents (or, without MODEL, the environment) as one JSON object.")
def info(model, as_json) -> None:
    """Show what a model file holds: plugins and their options and versions, input shape,
    features and table columns, threshold, calibration, training epochs and final losses.
    Works without the model's plugins installed.

    Without MODEL, show the environment: the versions of aae-anomaly, Python and the
    packages it uses (optional ones installed or not), the torch build and its threads,
    the CUDA devices, the device --device auto picks, and the plugins found.

    \b
    Example:
      aae-anomaly info model.aae
      aae-anomaly info --json
    """
    if model is None:
        environment = describe_environment(get_plugin_manager())
        click.echo(json.dumps(environment) if as_json else format_environment(environment))
        return
    with user_errors():
        header = read_header(model)
    click.echo(json.dumps(describe_model(header)) if as_json else format_model(header))


@main.command()
@json_option("A JSON object with plugins and failures.")
def plugins(as_json) -> None:
    """List every prior, encoder and dataset, with the plugin, distribution and version
    each comes from. Plugins that failed to load are listed on stderr.

    \b
    Example:
      aae-anomaly plugins
    """
    manager = get_plugin_manager()
    rows = plugin_rows(manager)
    failures = [
        {"plugin": f.plugin, "distribution": f.distribution, "message": f.message}
        for f in manager.failures
    ]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": failures}))
        return
    click.echo(format_table(rows, ("kind", "name", "plugin", "distribution", "version")))
    wanted = distributions_to_load()
    if wanted is not None:
        chosen = "".join(f", {name}" for name in wanted.values())
        click.echo(f"note: {LOAD_PLUGINS_VARIABLE} loads only the built-ins{chosen}", err=True)
    for failure in failures:
        source = failure["distribution"] or "unknown distribution"
        click.echo(
            f"note: plugin {failure['plugin']} ({source}) failed: {failure['message']}", err=True
        )
