"""``AAEDetector``: the scikit-learn face of the library."""

from __future__ import annotations

import copy
import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from .architectures import Architecture
from .engine import AAEModule, Discriminator, TrainingConfig
from .engine.inference import encode_rows, inference_ready
from .engine.model import POSTERIORS, RECONSTRUCTION_LOSSES
from .engine.runtime import compute_threads, flush_denormals, resolve_device, seeded
from .engine.training import Trainer
from .errors import CheckpointError, PluginError
from .plugins import get_plugin_manager
from .priors import Prior
from .scoring import (
    COMPONENTS,
    ScoreCalibration,
    available_components,
    default_weights,
    joint_coordinates,
    raw_components,
)

# Rows per batch when scoring: large batches keep the small networks' matrix products busy,
# and one fixed size makes each row's score independent of the rows beside it.
SCORING_BATCH_SIZE = 4096
SCALINGS = ("auto", "per_feature", "shared")
# With fewer calibration rows than this, calibrate on the training rows instead.
MIN_CALIBRATION_ROWS = 5
# The neighbors component compares with at most this many training rows: enough for a
# stable density estimate, few enough that scoring stays fast and model files small.
MAX_REFERENCE_ROWS = 4096
# contamination="auto" flags rows scoring above this quantile of held-out normal rows.
AUTO_QUANTILE = 0.99
# The networks compute in float32: larger magnitudes cannot be represented.
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT64_MAX = float(np.finfo(np.float64).max)
# At scoring time, values further than this many training spreads from the training centre
# are scored as if they were at this distance: such rows score far above any threshold,
# and their scores stay finite instead of overflowing float32 in the networks.
SATURATION = 1e6
# The metrics the progress bar shows: shown name -> (metric, format).
_PROGRESS_METRICS = {
    "recon": ("reconstruction", ".4g"),
    "disc": ("discriminator", ".3f"),
    "gen": ("generator", ".3f"),
    "acc": ("discriminator_accuracy", ".2f"),
}


class ExtremeValueWarning(UserWarning):
    """Rows with values so far outside the training data that they were saturated."""


class AAEDetector(OutlierMixin, TransformerMixin, BaseEstimator):
    """Anomaly detector built on an adversarial autoencoder (Makhzani et al., 2015).

    Fit on normal data; a new sample is anomalous when it reconstructs badly and when its
    latent code is unlikely under the prior (see :mod:`aae_anomaly.scoring`).

    Parameters
    ----------
    prior : str, default="gaussian"
        Name of a registered prior plugin (``gaussian``, ``mixture``, ``swiss_roll``,
        ``uniform``, or one a third-party package adds).
    prior_params : dict, default=None
        Options for the prior, e.g. ``{"n_components": 10}`` for ``mixture``.
    encoder : str, default="mlp"
        Name of a registered encoder architecture (``mlp`` for tabular rows, ``conv`` for
        images).
    encoder_params : dict, default=None
        Options for the architecture, e.g. ``{"hidden": [128, 64]}`` for ``mlp``.
    latent_dim : int or "auto", default="auto"
        Size of the latent code. ``"auto"`` takes half the number of features, between 2
        and 8: a code narrower than the input, so the decoder cannot simply copy it.
    epochs : int, default=50
        Passes over the training rows.
    batch_size : int, default=128
        Rows per mini-batch.
    lr_autoencoder, lr_discriminator, lr_generator : float
        Adam learning rates of the reconstruction step, the discriminator step and the
        encoder's adversarial step.
    reconstruction_loss : {"mse", "l1", "bce"}, default="mse"
        ``bce`` scales inputs to [0, 1] with the training minimum and maximum; the others
        standardize them (mean and standard deviation).
    scaling : {"auto", "per_feature", "shared"}, default="auto"
        Whose statistics scale the inputs. ``per_feature``: each column its own, for
        columns in different units. ``shared``: one centre and scale for all columns (per
        channel for images), for columns in one unit such as pixels, where per-column
        scaling would turn ink on a pixel that was always dark in training into a huge
        value. ``"auto"``: ``shared`` for images (a 4-D ``X``, an ``input_shape`` of
        several dimensions, or an image architecture), ``per_feature`` otherwise.
    posterior : {"deterministic", "gaussian"}, default="deterministic"
        The encoder's q(z|x): a point, or a Gaussian sampled with the reparameterization
        trick during training (its mean is used for scoring).
    input_shape : tuple of int, default=None
        Per-sample shape for image architectures, e.g. ``(1, 28, 28)``; inferred when
        ``None`` (a 4-D ``X`` gives it directly).
    score_weights : dict, default=None
        Weight of each score component in the combined score. ``None`` takes the default
        that measured best on real data (see ``docs/scoring.md``): the ``neighbors``
        component, or ``reconstruction`` when ``n_neighbors=0``.
    n_neighbors : int, default=5
        Neighbours averaged by the ``neighbors`` component, which measures distance to
        normal training rows in the AAE's (code, residual) coordinates. The model keeps
        those coordinates for up to 4,096 training rows. ``0`` turns the component off,
        and then no training rows are kept.
    calibration_fraction : float, default=0.1
        Share of the training rows held back to normalize the score components.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Expected share of anomalies. ``"auto"`` puts the threshold at the 99th percentile
        of the held-out normal rows' scores; a float puts it at that quantile of the
        training rows' scores.
    device : str, default="auto"
        ``"auto"`` uses CUDA when present, else CPU; or any torch device string.
    random_state : int, RandomState or None, default=None
        Seed for a reproducible fit: same data and seed give bit-identical scores on CPU.
    verbose : bool, default=False
        Show a progress bar with the losses during fit.

    Attributes
    ----------
    module_ : AAEModule
        The encoder, decoder and discriminator.
    prior_ : Prior
    history_ : dict of list of float
        Per-epoch ``reconstruction``, ``discriminator`` and ``generator`` losses,
        ``discriminator_accuracy``, ``learning_rate_scale`` (below 1 after a diverged
        epoch was retried with smaller learning rates) and ``discriminator_overpowered``
        (1 where the discriminator's accuracy stayed above 0.95 for the last 5 epochs).
    calibration_ : ScoreCalibration
    offset_ : float
        ``decision_function = score_samples - offset_``.
    input_shape_ : tuple of int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    normal_classes_ : ndarray
        Only after ``fit(X, classes=...)``: the classes of normal data, sorted; class
        ``normal_classes_[k]`` has the prior's ``k``-th region.
    """

    def __init__(
        self,
        prior: str = "gaussian",
        prior_params: dict | None = None,
        encoder: str = "mlp",
        encoder_params: dict | None = None,
        latent_dim: int | str = "auto",
        epochs: int = 50,
        batch_size: int = 128,
        lr_autoencoder: float = 1e-3,
        lr_discriminator: float = 5e-4,
        lr_generator: float = 1e-3,
        reconstruction_loss: str = "mse",
        scaling: str = "auto",
        posterior: str = "deterministic",
        input_shape: tuple[int, ...] | None = None,
        score_weights: dict | None = None,
        n_neighbors: int = 5,
        calibration_fraction: float = 0.1,
        contamination: str | float = "auto",
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ):
        self.prior = prior
        self.prior_params = prior_params
        self.encoder = encoder
        self.encoder_params = encoder_params
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_autoencoder = lr_autoencoder
        self.lr_discriminator = lr_discriminator
        self.lr_generator = lr_generator
        self.reconstruction_loss = reconstruction_loss
        self.scaling = scaling
        self.posterior = posterior
        self.input_shape = input_shape
        self.score_weights = score_weights
        self.n_neighbors = n_neighbors
        self.calibration_fraction = calibration_fraction
        self.contamination = contamination
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ---------------------------------------------------------------------------
    def fit(
        self, X, y=None, *, classes=None, anomaly_labels=None, checkpoint_dir=None, resume=False
    ):
        """Fit on ``X``, rows of normal data.

        ``y`` is not used; when given, it must have one entry per row of ``X``.

        ``classes`` (optional) names the class of each normal row (integers or strings,
        e.g. product types): label-conditioned regularization gives each class its own
        region of the latent space (see :mod:`aae_anomaly.conditioning`). It needs a prior
        with a region per class: ``mixture`` (``n_components``) or ``swiss_roll``
        (``n_segments``) with at least as many regions as classes.

        ``anomaly_labels`` (optional) marks known anomalies among the rows of ``X`` with 1
        (normal or unknown rows 0): semi-supervised detection. Those rows are not trained
        or calibrated on; the model keeps their (code, residual) coordinates, and a row
        closer to a known anomaly than to its normal neighbours gets a higher
        ``neighbors`` component (see :func:`aae_anomaly.scoring.with_known_anomalies`).
        Needs ``n_neighbors > 0``. Class labels of normal rows go to ``classes``, never
        here.

        With ``checkpoint_dir``, the state of the fit is written there after every epoch
        (which needs an integer ``random_state``); ``resume=True`` continues from it, with
        the same data and parameters, to the model an uninterrupted fit would give (when
        there is no checkpoint yet, the fit starts from the beginning). Without ``resume``,
        an existing checkpoint there is an error rather than overwritten.
        """
        self._check_params()
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        X, image_shape = _flatten_images(X)
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, ensure_all_finite=False
        )
        _check_values(X, getattr(self, "feature_names_in_", None), limit=FLOAT32_MAX)
        if y is not None:
            check_consistent_length(X, y)
        known_anomalies = None
        if anomaly_labels is not None:
            X, classes, known_anomalies = self._without_known_anomalies(X, classes, anomaly_labels)
        class_index = None
        if classes is not None:
            from .conditioning import encode_classes

            normal_classes, class_index = encode_classes(classes, len(X))
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_index, calibration_index = self._split_calibration(len(X), rng)
        train_rows, calibration_rows = X[train_index], X[calibration_index]
        train_classes = None if class_index is None else class_index[train_index]
        checkpoint = (
            None
            if checkpoint_dir is None
            else self._checkpoint(checkpoint_dir, train_rows, resume, train_classes)
        )

        architecture, input_shape = _architecture_and_input_shape(self, image_shape, X.shape[1])
        self.latent_dim_ = self._resolved_latent_dim(X.shape[1])
        prior = create_prior(self.prior, self.latent_dim_, self.prior_params or {})
        self.__dict__.pop("normal_classes_", None)
        if class_index is not None:
            from .conditioning import check_prior

            check_prior(prior, self.prior, len(normal_classes))
            self.normal_classes_ = normal_classes

        reference_rows = train_rows
        if self.n_neighbors and len(train_rows) > MAX_REFERENCE_ROWS:
            chosen = rng.choice(len(train_rows), MAX_REFERENCE_ROWS, replace=False)
            reference_rows = train_rows[np.sort(chosen)]
        n_reference = len(reference_rows) if self.n_neighbors else 0
        if known_anomalies is not None and len(known_anomalies) > MAX_REFERENCE_ROWS:
            chosen = rng.choice(len(known_anomalies), MAX_REFERENCE_ROWS, replace=False)
            known_anomalies = known_anomalies[np.sort(chosen)]
        n_anomalies = 0 if known_anomalies is None else len(known_anomalies)

        device = resolve_device(self.device)
        with seeded(seed, device) as generator, flush_denormals():
            center, scale = _input_scaling(
                train_rows, self.reconstruction_loss, scaling_groups(self.scaling, input_shape)
            )
            module = self._build_module(
                architecture, input_shape, center, scale, n_reference, n_anomalies
            ).to(device)
            rows = torch.tensor(train_rows, dtype=torch.float32, device=device)
            row_classes = None
            if train_classes is not None:
                row_classes = torch.as_tensor(train_classes, device=device)
            with compute_threads(module, device) as workers:
                trainer = Trainer(
                    module, prior, rows, self._training_config(), generator, row_classes
                )
                if checkpoint is not None and checkpoint.exists():
                    checkpoint.restore(trainer)
                self.history_ = trainer.fit(self._epoch_callback(trainer, checkpoint))
                del rows, trainer
                if n_reference:
                    module.reference.copy_(
                        joint_coordinates(
                            module, reference_rows, SCORING_BATCH_SIZE, device, workers
                        )
                    )
                if n_anomalies:
                    module.anomaly_reference.copy_(
                        joint_coordinates(
                            module, known_anomalies, SCORING_BATCH_SIZE, device, workers
                        )
                    )
            self.module_, self.prior_, self.device_ = module, prior, device
            self.input_shape_ = input_shape
            calibration_components = self._raw_components(calibration_rows)
            self.calibration_ = ScoreCalibration.fit(
                calibration_components, self._checked_weights(module, prior)
            )
            if self.contamination == "auto":
                calibration_scores = self.calibration_.combine(calibration_components)
                self.offset_ = -float(np.quantile(calibration_scores, AUTO_QUANTILE))
            else:
                scores = self.calibration_.combine(
                    self._raw_components(X, wanted=self.calibration_.weighted())
                )
                self.offset_ = float(np.percentile(-scores, 100.0 * self.contamination))
        return self

    def _build_module(
        self,
        architecture: Architecture,
        input_shape,
        center: np.ndarray,
        scale: np.ndarray,
        n_reference: int = 0,
        n_anomaly_reference: int = 0,
    ) -> AAEModule:
        """The untrained networks for this configuration; ``fit`` and model-file loading
        both build through here, so a stored state dict always matches what is built."""
        code_size = self.latent_dim_ * (2 if self.posterior == "gaussian" else 1)
        encoder, decoder = architecture.build(input_shape, self.latent_dim_, code_size)
        n_classes = len(getattr(self, "normal_classes_", ()))
        return AAEModule(
            encoder,
            decoder,
            Discriminator(self.latent_dim_ + n_classes),
            input_shape,
            self.latent_dim_,
            self.posterior,
            self.reconstruction_loss,
            torch.from_numpy(center),
            torch.from_numpy(scale),
            n_reference,
            n_classes,
            n_anomaly_reference,
        )

    def _without_known_anomalies(self, X: np.ndarray, classes, anomaly_labels):
        """The normal rows, their classes, and the rows ``anomaly_labels`` marks with 1."""
        labels = np.asarray(anomaly_labels)
        if labels.shape != (len(X),):
            raise ValueError(
                f"anomaly_labels must hold one label (0 or 1) per row of X ({len(X)}), got "
                f"shape {labels.shape}"
            )
        if labels.dtype != bool and not (
            np.issubdtype(labels.dtype, np.number) and np.isin(labels, (0, 1)).all()
        ):
            raise ValueError(
                "anomaly_labels must be 0 (normal or unknown) or 1 (a known anomaly); class "
                "labels of normal rows go to classes="
            )
        marked = labels.astype(bool)
        if not self.n_neighbors:
            raise ValueError(
                "known anomalies are used through the neighbors component: anomaly_labels "
                "needs n_neighbors > 0"
            )
        if (~marked).sum() < 2:
            raise ValueError("anomaly_labels must leave at least 2 normal rows to train on")
        if classes is not None:
            classes = np.asarray(classes)
            if classes.shape != (len(X),):
                raise ValueError(
                    f"classes must hold one class label per row of X ({len(X)}), got shape "
                    f"{classes.shape}"
                )
            classes = classes[~marked]
        known = X[marked] if marked.any() else None
        return X[~marked], classes, known

    def _restore_fitted_state(
        self,
        *,
        module: AAEModule,
        prior: Prior,
        device: torch.device,
        input_shape: tuple[int, ...],
        calibration: ScoreCalibration,
        offset: float,
        history: dict[str, list[float]],
        feature_names: list[str] | None = None,
        normal_classes: np.ndarray | None = None,
    ) -> AAEDetector:
        """Set the learned attributes from stored state (see :mod:`aae_anomaly.modelfile`)."""
        if normal_classes is not None:
            self.normal_classes_ = np.asarray(normal_classes)
        self.module_ = module.to(device).eval()
        self.latent_dim_ = module.latent_dim
        self.prior_, self.device_ = prior, device
        self.input_shape_ = tuple(input_shape)
        self.n_features_in_ = int(np.prod(self.input_shape_))
        if feature_names is not None:
            self.feature_names_in_ = np.asarray(feature_names, dtype=object)
        self.calibration_, self.offset_, self.history_ = calibration, float(offset), history
        return self

    def save(self, path) -> None:
        """Write the fitted detector to one safetensors file, atomically; read it back with
        :func:`aae_anomaly.load`. The file holds no pickle and runs no code when loaded."""
        from .modelfile import save_model  # the model-file module imports this one

        save_model(self, path)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: Python 3.11+ returns __dict__ itself
        module = state.get("module_")
        if module is not None and state["device_"].type != "cpu":
            # CUDA tensors in a pickle fail to load where there is no GPU; a CPU copy loads
            # anywhere. The detector in memory stays on its device.
            state["module_"] = copy.deepcopy(module).cpu()
            state["device_"] = torch.device("cpu")
        return state

    def _resolved_latent_dim(self, n_features: int) -> int:
        if self.latent_dim == "auto":
            return int(min(8, max(2, n_features // 2)))
        return self.latent_dim

    def _split_calibration(self, n_rows: int, rng: np.random.RandomState):
        """Indices (or a slice) of the training rows and of the calibration rows."""
        n_calibration = int(round(self.calibration_fraction * n_rows))
        if n_calibration < MIN_CALIBRATION_ROWS or n_rows - n_calibration < 2:
            # too few rows to hold any back: calibrate on the training rows
            return slice(None), slice(None)
        order = rng.permutation(n_rows)
        return order[n_calibration:], order[:n_calibration]

    def _training_config(self) -> TrainingConfig:
        return TrainingConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr_autoencoder=self.lr_autoencoder,
            lr_discriminator=self.lr_discriminator,
            lr_generator=self.lr_generator,
        )

    def _checkpoint(self, directory, train_rows: np.ndarray, resume: bool, classes=None):
        from .engine.checkpoint import Checkpoint, data_digest

        if isinstance(self.random_state, bool) or not isinstance(
            self.random_state, numbers.Integral
        ):
            raise ValueError(
                "checkpointing needs an integer random_state, so that a resumed fit continues "
                f"the same one; got {self.random_state!r}"
            )
        params = self.get_params(deep=False)
        del params["verbose"]
        if params["input_shape"] is not None:
            params["input_shape"] = [int(s) for s in params["input_shape"]]
        params["random_state"] = int(params["random_state"])
        identity = {"params": params, "training_rows_sha256": data_digest(train_rows)}
        if classes is not None:
            identity["training_classes_sha256"] = data_digest(classes)
        checkpoint = Checkpoint(directory, identity)
        if checkpoint.exists() and not resume:
            raise CheckpointError(
                f"{checkpoint.path} already holds a checkpoint ({checkpoint.epochs_done()} of "
                f"{self.epochs} epochs); resume it, or remove it to start over"
            )
        return checkpoint

    def _epoch_callback(self, trainer: Trainer, checkpoint):
        progress = progress_bar(self, _PROGRESS_METRICS, initial=trainer.epoch)
        if checkpoint is None:
            return progress

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            checkpoint.save(trainer)
            if progress is not None:
                progress(epoch, metrics)

        return on_epoch_end

    def _check_params(self) -> None:
        if self.latent_dim != "auto":
            _check_int("latent_dim", self.latent_dim)
        _check_int("epochs", self.epochs)
        _check_int("batch_size", self.batch_size)
        if isinstance(self.n_neighbors, bool) or not isinstance(
            self.n_neighbors, numbers.Integral
        ) or self.n_neighbors < 0:
            raise ValueError(
                f"n_neighbors must be a non-negative integer, got {self.n_neighbors!r}"
            )
        check_training_settings(self)
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {self.posterior!r}")
        fraction = self.calibration_fraction
        if not isinstance(fraction, numbers.Real) or not 0 <= fraction < 1:
            raise ValueError(f"calibration_fraction must be in [0, 1), got {fraction!r}")
        contamination = self.contamination
        if contamination != "auto" and not (
            isinstance(contamination, numbers.Real) and 0 < contamination <= 0.5
        ):
            raise ValueError(
                f"contamination must be 'auto' or a float in (0, 0.5], got {contamination!r}"
            )
        for name in ("prior_params", "encoder_params", "score_weights"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}")

    def _checked_weights(self, module: AAEModule, prior: Prior) -> dict[str, float]:
        names = available_components(module, prior)
        if self.score_weights is None:
            return default_weights(names)
        unknown = set(self.score_weights) - set(COMPONENTS)
        if unknown:
            raise ValueError(
                f"score_weights has unknown components {sorted(unknown)}; "
                f"expected some of {list(COMPONENTS)}"
            )
        weights = {name: float(self.score_weights.get(name, 0.0)) for name in names}
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(
                f"score_weights must be non-negative with a positive sum over the "
                f"components this model has ({', '.join(names)}), got {self.score_weights}"
            )
        return weights

    # -- scoring ---------------------------------------------------------------------------
    def _validated_rows(self, X) -> np.ndarray:
        X = _fitted_rows(self, X, ensure_all_finite=False)
        _check_values(X, getattr(self, "feature_names_in_", None), limit=FLOAT64_MAX)
        return self._saturated(X)

    def _saturated(self, X: np.ndarray) -> np.ndarray:
        """``X`` with values beyond :data:`SATURATION` training spreads from the training
        centre moved to that distance, with a warning naming the columns."""
        center = self.module_.center.double().cpu().numpy()
        scale = self.module_.scale.double().cpu().numpy()
        # the networks see float32 values: a value that rounds to the centre is at it
        margin = SATURATION * scale + np.abs(center) * float(np.finfo(np.float32).eps)
        low, high = center - margin, center + margin
        outside = np.less(X, low) | np.greater(X, high)
        if not outside.any():
            return X
        columns = np.flatnonzero(outside.any(axis=0))
        warnings.warn(
            f"{int(outside.any(axis=1).sum())} rows have values more than {SATURATION:g} "
            f"training spreads from the training data in "
            f"{_describe_columns(columns, getattr(self, 'feature_names_in_', None))}; "
            "they are scored as if they were at that distance, far above the threshold",
            ExtremeValueWarning,
            stacklevel=4,
        )
        return np.clip(X, low.astype(X.dtype), high.astype(X.dtype))

    def _finite_scores(self, values: np.ndarray, what: str) -> np.ndarray:
        """Raise instead of returning NaN or infinite scores."""
        if np.isfinite(values).all():
            return values
        rows = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))
        raise ValueError(
            f"the model gave non-finite {what} for {len(rows)} rows (first: row {rows[0]}); "
            "their values overflow the networks' float32 arithmetic: check them for "
            "extreme magnitudes"
        )

    def _raw_components(
        self, rows: np.ndarray, classes=None, chosen_classes=None, wanted=None
    ) -> dict[str, np.ndarray]:
        with flush_denormals(), compute_threads(self.module_, self.device_) as workers:
            return raw_components(
                self.module_, self.prior_, rows, SCORING_BATCH_SIZE, self.device_, workers,
                self.n_neighbors, classes, chosen_classes, wanted,
            )

    def _class_indices(self, classes, n_rows: int) -> np.ndarray | None:
        """Row class indices of a label-conditioned model, or None to use each row's
        best-matching class."""
        if classes is None:
            return None
        known = getattr(self, "normal_classes_", None)
        if known is None:
            raise ValueError("classes apply to a model fitted with classes; this one was not")
        from .conditioning import class_indices

        return class_indices(known, classes, n_rows)

    def score_components(self, X, *, classes=None) -> dict[str, np.ndarray]:
        """Each raw score component per sample, and the combined ``score``.

        Keys: ``reconstruction``, ``discriminator``, ``density`` (for priors with a
        density) and ``score``; larger values are more anomalous in every one. For a model
        fitted with ``classes``, there is also ``class``: the class each row was scored
        as, its given one (``classes``) or else its best-matching one.
        """
        rows = self._validated_rows(X)
        given = self._class_indices(classes, len(rows))
        chosen = None
        if getattr(self, "normal_classes_", None) is not None:
            chosen = np.empty(len(rows), dtype=np.int64)
        components = self._raw_components(rows, given, chosen)
        components["score"] = self._finite_scores(self.calibration_.combine(components), "scores")
        if chosen is not None:
            components["class"] = self.normal_classes_[chosen]
        return components

    def score_samples(self, X, *, classes=None) -> np.ndarray:
        """Opposite of the anomaly score: the higher, the more normal.

        ``classes``: for a model fitted with classes, each row's class (else each row is
        scored in the region of its best-matching class)."""
        rows = self._validated_rows(X)
        components = self._raw_components(
            rows, self._class_indices(classes, len(rows)), wanted=self.calibration_.weighted()
        )
        return -self._finite_scores(self.calibration_.combine(components), "scores")

    def decision_function(self, X, *, classes=None) -> np.ndarray:
        """Shifted score: negative for outliers, positive for inliers."""
        return self.score_samples(X, classes=classes) - self.offset_

    def predict(self, X, *, classes=None) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X, classes=classes) < 0, -1, 1)

    # -- latent space ----------------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """Latent codes (the posterior mean) of ``X``, shape ``(n, latent_dim)``."""
        rows = self._validated_rows(X)
        with flush_denormals(), compute_threads(self.module_, self.device_) as workers:
            codes = encode_rows(self.module_, rows, SCORING_BATCH_SIZE, self.device_, workers)
        return self._finite_scores(codes, "latent codes")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the ``transform`` output columns: ``latent0``, ``latent1``, ..."""
        check_is_fitted(self)
        return np.asarray([f"latent{i}" for i in range(self.latent_dim_)], dtype=object)

    def sample(self, n_samples: int = 1, random_state=None, *, classes=None) -> np.ndarray:
        """Draw ``n_samples`` new rows: prior samples passed through the decoder.

        ``classes`` (a model fitted with classes): one class for all samples, or one per
        sample; each is drawn from its class's region of the prior."""
        check_is_fitted(self)
        _check_int("n_samples", n_samples)
        given = None
        if classes is not None:
            if np.ndim(classes) == 0:
                classes = [classes] * n_samples
            given = torch.as_tensor(self._class_indices(classes, n_samples))
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        with seeded(seed, self.device_) as generator, torch.inference_mode():
            if given is None:
                z = self.prior_.sample(n_samples, generator)
            else:
                z = self.prior_.sample(n_samples, generator, labels=given.to(self.device_))
            module = inference_ready(self.module_)
            rows = module.unscale_output(module.decode(z))
        return rows.double().cpu().numpy()


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


def create_architecture(name: str, options: dict[str, Any]) -> Architecture:
    """Build the encoder architecture plugin ``name`` with ``options``."""
    architecture = get_plugin_manager().create("encoder", name, **options)
    _check_built("encoder", name, architecture, Architecture)
    return architecture


def _architecture_and_input_shape(
    estimator, image_shape: tuple[int, ...] | None, n_features: int
) -> tuple[Architecture, tuple[int, ...]]:
    """The estimator's encoder architecture, and the per-sample input shape: that of the
    images in ``X``, else the ``input_shape`` parameter (checked against ``n_features``),
    else the architecture's inference from ``n_features``."""
    architecture = create_architecture(estimator.encoder, estimator.encoder_params or {})
    input_shape = tuple(image_shape or estimator.input_shape or ())
    if input_shape:
        architecture.check_input_shape(input_shape, n_features)
    else:
        input_shape = architecture.infer_input_shape(n_features)
    return architecture, input_shape


def create_prior(name: str, latent_dim: int, options: dict[str, Any]) -> Prior:
    """Build the prior plugin ``name`` over ``latent_dim``-dimensional codes."""
    prior = get_plugin_manager().create("prior", name, latent_dim, **options)
    _check_built("prior", name, prior, Prior)
    return prior


def _check_built(kind: str, name: str, built: Any, expected: type) -> None:
    if isinstance(built, expected):
        return
    registration = get_plugin_manager().get(kind, name)
    raise PluginError(
        f"{kind} {name!r} ({registration.source}) returned a {type(built).__name__}, "
        f"not an aae_anomaly {expected.__name__}; report this to the plugin's authors"
    )


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_positive_number(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Real) or not 0 < value < np.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _flatten_images(X):
    """A 4-D array ``(n, channels, height, width)`` becomes flat rows plus its image shape."""
    if hasattr(X, "ndim") and not hasattr(X, "columns"):
        if X.ndim == 4:
            X = np.asarray(X)
            shape = tuple(int(s) for s in X.shape[1:])
            # an explicit width, since -1 cannot be inferred for zero images
            return X.reshape(len(X), int(np.prod(shape))), shape
        if X.ndim == 1:
            # scikit-learn's wording, without the array itself, which may be long
            raise ValueError(
                f"Expected 2D array, got 1D array instead (shape {tuple(X.shape)}). Reshape "
                "your data either using array.reshape(-1, 1) if your data has a single "
                "feature or array.reshape(1, -1) if it contains a single sample."
            )
        if X.ndim == 3 or X.ndim > 4:
            raise ValueError(
                f"Found array with dim {X.ndim}, shape {tuple(X.shape)}; expected rows "
                "(n_samples, n_features) or images (n_samples, channels, height, width)"
            )
    return X, None


def _fitted_rows(estimator, X, ensure_all_finite: bool = True) -> np.ndarray:
    """New rows for a fitted estimator: images flattened and checked against the fitted
    input shape, then validated against the columns it was fitted on."""
    check_is_fitted(estimator)
    X, image_shape = _flatten_images(X)
    if image_shape is not None and image_shape != estimator.input_shape_:
        raise ValueError(
            f"images have shape {image_shape} but the model was fitted on "
            f"{estimator.input_shape_}"
        )
    return validate_data(
        estimator, X, dtype=[np.float64, np.float32], reset=False,
        ensure_all_finite=ensure_all_finite,
    )


def _describe_columns(columns: np.ndarray, names) -> str:
    shown = [repr(str(names[c])) if names is not None else str(c) for c in columns[:5]]
    more = f" and {len(columns) - 5} more" if len(columns) > 5 else ""
    return f"column{'s' if len(columns) > 1 else ''} {', '.join(shown)}{more}"


def _check_values(X: np.ndarray, names, limit: float) -> None:
    """Raise ValueError naming the columns if ``X`` holds NaN, infinity, or values beyond
    ``limit`` in magnitude. Two reductions when all is well; the diagnosis only on error."""
    # compared as Python floats: numpy would cast the limit to X's dtype, where
    # float64's limit overflows float32
    if X.size == 0 or (-limit <= float(X.min()) and float(X.max()) <= limit):
        return
    for kind, bad in (
        ("NaN", np.isnan(X)),
        ("infinity", np.isinf(X)),
        ("values beyond float32's range (|x| > 3.4e38)", np.abs(X) > limit),
    ):
        if bad.any():
            columns = np.flatnonzero(bad.any(axis=0))
            first_row = int(np.flatnonzero(bad.any(axis=1))[0])
            remedy = (
                "the networks compute in float32: rescale these columns"
                if kind.startswith("values")
                else "impute or drop missing and infinite values first"
            )
            raise ValueError(
                f"Input X contains {kind} in {_describe_columns(columns, names)} "
                f"(first in row {first_row}); {remedy}"
            )


def check_training_settings(estimator) -> None:
    """The learning rates and the reconstruction loss every AAE estimator takes."""
    for name in ("lr_autoencoder", "lr_discriminator", "lr_generator"):
        _check_positive_number(name, getattr(estimator, name))
    if estimator.reconstruction_loss not in RECONSTRUCTION_LOSSES:
        raise ValueError(
            f"reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, "
            f"got {estimator.reconstruction_loss!r}"
        )
    check_scaling(estimator.scaling)


def check_scaling(scaling) -> None:
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


def scaling_groups(scaling: str, input_shape: tuple[int, ...]) -> int | None:
    """How many groups of columns share a centre and scale under ``scaling``: ``None``
    for one per column, else the number of channels (1 for flat rows). ``auto`` shares
    within each channel of images (an input shape of several dimensions)."""
    images = len(input_shape) > 1
    if scaling == "per_feature" or (scaling == "auto" and not images):
        return None
    return input_shape[0] if images else 1


def _input_scaling(
    rows: np.ndarray, loss: str, groups: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale, one per column, that map the training rows to the network's units.

    Standardization for mse and l1, [0, 1] for bce. With ``groups``, the columns fall into
    that many consecutive equal groups (the channels of an image) and each group shares
    the statistics of all its values. Statistics are taken in float64; a constant column
    (or group) gets scale 1, so it maps to zero instead of NaN.
    """
    values = rows.astype(np.float64, copy=False)
    n_columns = values.shape[1]
    axes: int | tuple[int, int] = 0
    if groups is not None:
        values, axes = values.reshape(len(values), groups, -1), (0, 2)
    if loss == "bce":
        center = values.min(axis=axes)
        scale = values.max(axis=axes) - center
    else:
        center = values.mean(axis=axes)
        scale = values.std(axis=axes)
    # below float32's resolution of the centre, the variation is rounding noise
    varies = (scale > 1e-6 * np.abs(center)) & (scale > 1e-30)
    scale = np.where(varies, scale, 1.0)
    if groups is not None:
        center = np.repeat(center, n_columns // groups)
        scale = np.repeat(scale, n_columns // groups)
    return center.astype(np.float32), scale.astype(np.float32)
