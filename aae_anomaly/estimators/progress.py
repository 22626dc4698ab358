"""The progress bar a verbose fit shows (tqdm)."""

from __future__ import annotations


def progress_bar(estimator, shown: dict[str, tuple[str, str]], initial: int = 0):
    """An epoch callback that advances a progress bar of ``estimator.epochs`` epochs and
    shows the metrics in ``shown`` (shown name -> (metric, format)); ``None`` unless the
    estimator is verbose."""
    if not estimator.verbose:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=estimator.epochs, initial=initial, desc="fit", unit="epoch")

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        # keyword arguments, which tqdm shows in alphabetical order
        bar.set_postfix(
            **{name: format(metrics[key], spec) for name, (key, spec) in shown.items()}
        )
        bar.update(1)
        if epoch + 1 == estimator.epochs:
            bar.close()

    return on_epoch_end

