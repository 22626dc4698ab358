"""``plot``: a picture of a model, as a PNG file."""

from __future__ import annotations

import warnings

import click

from ..estimators.loading import load_model
from ..io.tables import check_labels
from .app import main, user_errors
from .inputs import load_model_and_data
from .options import anomaly_labels_option, scoring_device_option


@main.command()
@click.argument("model")
@click.argument("data", required=False)
@click.option("-o", "--output", required=True, help="PNG file to write.")
@click.option(
    "--kind",
    type=click.Choice(("map", "histogram", "samples")),
    default="map",
    help="map: the latent codes of DATA over the prior's samples; histogram: DATA's scores "
    "and the threshold; samples: images decoded from the prior (image models, no DATA).",
)
@click.option(
    "--color",
    type=click.Choice(("score", "label")),
    default="score",
    help="What colours a map's points: the anomaly score, or DATA's labels.",
)
@anomaly_labels_option()
@click.option("--dpi", type=int, default=100, help="Pixels per inch of the PNG.")
@scoring_device_option()
def plot(model, data, output, kind, color, label_column, dpi, device) -> None:
    """Draw a picture of MODEL to a PNG file (needs: pip install 'aae-anomaly[plot]').

    A 2-D latent map (codes of more dimensions are projected on their first two
    principal axes), the score histogram with the threshold, or a grid of decoded samples.

    \b
    Example:
      aae-anomaly plot model.aae test.npz -o map.png --color label
      aae-anomaly plot model.aae test.csv -o scores.png --kind histogram
      aae-anomaly plot model.aae -o samples.png --kind samples
    """
    from .. import plotting

    with user_errors():
        if not output.lower().endswith(".png"):
            raise ValueError(f"{output}: the picture is written as PNG; name it *.png")
        plotting.require_matplotlib()
        if kind == "samples":
            if data is not None:
                raise ValueError("--kind samples draws from the prior and takes no DATA")
            plotting.plot_samples(load_model(model, device=device), output, dpi=dpi)
            return
        if data is None:
            raise ValueError(f"--kind {kind} needs DATA, the rows to draw")
        detector, dataset, _ = load_model_and_data(model, data, label_column, device)
        if color == "label" and kind == "map" and dataset.y is None:
            raise ValueError(
                f"--color label needs labels; {data} has none (use an .npz with y, a labelled "
                "dataset plugin, or --label-column NAME)"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            if kind == "map":
                plotting.plot_map(
                    detector, dataset.X, output, color=color, labels=dataset.y, dpi=dpi
                )
            else:
                labels = None
                if dataset.y is not None:
                    labels = check_labels(dataset.y, data, len(dataset.X))
                plotting.plot_histogram(detector, dataset.X, output, labels=labels, dpi=dpi)
