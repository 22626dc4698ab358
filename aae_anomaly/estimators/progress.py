"""What a verbose fit shows: a progress bar (tqdm) on ``verbose=1``, or one log line per
epoch, with the losses and the elapsed time, on ``verbose=2`` (for logs and terminals
that are not one, such as a batch job's)."""

from __future__ import annotations

import logging
import time

# The logger of every line a fit logs; a program shows them by giving it a handler (the
# command line's --verbose does).
LOGGER = logging.getLogger("aae_anomaly")


def progress_bar(estimator, shown: dict[str, tuple[str, str]], initial: int = 0):
    """An epoch callback that reports ``estimator.epochs`` epochs with the metrics in
    ``shown`` (shown name -> (metric, format)); ``None`` unless the estimator is verbose."""
    level = int(estimator.verbose or 0)
    if level <= 0:
        return None
    started = time.perf_counter()
    total = estimator.epochs
    if level >= 2:

        def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
            values = "  ".join(
                f"{name} {format(metrics[key], spec)}" for name, (key, spec) in shown.items()
            )
            LOGGER.info(
                "epoch %d/%d  %s  elapsed %.1f s", epoch + 1, total, values,
                time.perf_counter() - started,
            )

        return log_epoch
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc="fit", unit="epoch")

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        # keyword arguments, which tqdm shows in alphabetical order
        bar.set_postfix(
            **{name: format(metrics[key], spec) for name, (key, spec) in shown.items()}
        )
        bar.update(1)
        if epoch + 1 == total:
            bar.close()

    return on_epoch_end
