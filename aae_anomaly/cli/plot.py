"""``plot``: a picture of a model, as a PNG file."""

from __future__ import annotations

import warnings

import click

from ..io.tables import check_labels, check_output_path
from .app import main, user_errors
from .inputs import ignore_name_warnings, load_detector, load_model_and_data, without_columns
from .options import (
    anomaly_labels_option,
    drop_column_option,
    id_column_option,
    scoring_device_option,
    table_options,
)


@main.command()
@click.argument("model")
@click.argument("data", required=False)
@click.option("-o", "--output", required=True, help="PNG file to write.")
@click.option(
    "--kind",
    type=click.Choice(("map", "histogram", "samples")),
    default="map",
    show_default=True,
    help="map: the latent codes of DATA over the prior's samples; histogram: DATA's scores "
    "and the threshold; samples: images decoded from the prior (image models, no DATA).",
)
@click.option(
    "--color",
    type=click.Choice(("score", "label")),
    default="score",
    show_default=True,
    help="What colours a map's points: the anomaly score, or DATA's labels (normal, "
    "anomaly).",
)
@click.option(
    "--scale",
    type=click.Choice(("auto", "linear", "log", "rank")),
    default="auto",
    show_default=True,
    help="Scores' colour scale (map) or axis and bins (histogram): auto is log when a few "
    "scores reach far beyond the rest, else linear; rank (maps only) colours by rank.",
)
@anomaly_labels_option()
@id_column_option(" Left out of the picture, like the model's own id columns.")
@drop_column_option()
@table_options()
@click.option("--dpi", type=int, default=100, show_default=True, help="Pixels per inch of the PNG.")
@scoring_device_option()
def plot(
    model, data, output, kind, color, scale, label_column, id_columns, drop_columns,
    read_options, dpi, device,
) -> None:
    """Draw a picture of MODEL to a PNG file (needs: pip install 'aae-anomaly[plot]').

    A 2-D latent map (codes of more dimensions are projected on their first two
    principal axes), the score histogram with the threshold, or a grid of decoded samples
    on the training data's grey scale. A map's frame holds the bulk of the points; the
    few beyond it are drawn on its edge as triangles, and the legend counts them.

    \b
    Example:
      aae-anomaly plot model.aae test.npz -o map.png --color label
      aae-anomaly plot model.aae test.csv -o scores.png --kind histogram --scale log
      aae-anomaly plot model.aae -o samples.png --kind samples
    """
    from .. import plotting

    with user_errors():
        if not output.lower().endswith(".png"):
            raise ValueError(f"{output}: the picture is written as PNG; name it *.png")
        check_output_path(output)  # before the model is read and the rows scored
        if scale == "rank" and kind != "map":
            raise ValueError("--scale rank colours a map; a histogram takes auto, linear or log")
        plotting.require_matplotlib()
        if kind == "samples":
            if data is not None:
                raise ValueError("--kind samples draws from the prior and takes no DATA")
            plotting.plot_samples(load_detector(model, device), output, dpi=dpi)
            return
        if data is None:
            raise ValueError(f"--kind {kind} needs DATA, the rows to draw")
        detector, dataset, _ = load_model_and_data(
            model, data, label_column, device, read_options=read_options,
            drop_columns=drop_columns,
        )
        # the model leaves out its own id columns itself
        dataset = without_columns(dataset, list(id_columns), data, "--id-column")
        labels = None
        if dataset.y is not None:
            labels = check_labels(dataset.y, data, len(dataset.X))
        if color == "label" and kind == "map" and labels is None:
            raise ValueError(
                f"--color label needs labels; {data} has none (use an .npz with y, a labelled "
                "dataset plugin, or --label-column NAME)"
            )
        with warnings.catch_warnings():
            ignore_name_warnings()
            if kind == "map":
                plotting.plot_map(
                    detector, dataset.X, output, color=color, labels=labels, scale=scale, dpi=dpi
                )
            else:
                plotting.plot_histogram(
                    detector, dataset.X, output, labels=labels, scale=scale, dpi=dpi
                )
