"""``AAEDetector``: the scikit-learn face of the library.

The estimator holds its parameters and the fitted state; each step of a fit or a score is
done by a named collaborator: :mod:`.validation` (parameters and rows), :mod:`.scaling`
(input scaling), :mod:`.labels` (classes and known anomalies), :mod:`.building` (plugins
and networks), :mod:`.fitting` (the checkpointed training run), :mod:`.calibration` (the
score's normalization and threshold), :mod:`aae_anomaly.scoring` (the components) and
:mod:`.persistence` (model files).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..engine.distributed import current_group, rank_seed
from ..engine.inference import encode_rows, inference_ready, inference_threads
from ..engine.runtime import compute_threads, flush_denormals, resolve_device, seeded
from ..engine.training import StreamingTrainer, Trainer
from ..scoring import ScoreCalibration, available_components, joint_coordinates, raw_components
from ..scoring.conditioning import check_prior
from . import calibration, fitting, labels, streaming
from .building import (
    architecture_and_input_shape,
    build_detector_module,
    create_prior,
    resolved_latent_dim,
    training_config,
)
from .scaling import (
    channel_range,
    input_scaling,
    sample_statistics,
    scales_samples,
    scaling_groups,
)
from .validation import (
    FLOAT32_MAX,
    check_detector_params,
    check_int,
    check_values,
    finite,
    fitted_rows,
    scoring_rows,
    training_rows,
)


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
    scaling : {"auto", "per_feature", "shared", "per_sample"}, default="auto"
        Whose statistics scale the inputs. ``per_feature``: each column its own, for
        columns in different units. ``shared``: one centre and scale for all columns (per
        channel for images), for columns in one unit such as pixels, where per-column
        scaling would turn ink on a pixel that was always dark in training into a huge
        value. ``per_sample``: each sample first minus its own mean and divided by its own
        standard deviation (contrast normalization), then ``shared``, so that how bright
        or how inked a sample is does not count as a difference. ``"auto"``:
        ``per_sample`` for images (a 4-D ``X``, an ``input_shape`` of several dimensions,
        or an image architecture), ``per_feature`` otherwise.
    posterior : {"deterministic", "gaussian"}, default="deterministic"
        The encoder's q(z|x): a point, or a Gaussian sampled with the reparameterization
        trick during training (its mean is used for scoring).
    input_shape : tuple of int, default=None
        Per-sample shape for image architectures, e.g. ``(1, 28, 28)``; inferred when
        ``None`` (a 4-D ``X`` gives it directly).
    score_weights : dict, default=None
        Weight of each score component in the combined score. ``None`` takes the default
        that measured best on real data (see ``docs/scoring.md``): the ``neighbors``
        and ``inputs`` components (``neighbors`` alone where there is no ``inputs``: a
        fit with ``contamination`` or ``classes``), or ``reconstruction`` when
        ``n_neighbors=0``.
    n_neighbors : int or "auto", default="auto"
        Neighbours averaged by the ``neighbors`` component, which measures distance to
        normal training rows in the AAE's (code, residual) coordinates. ``"auto"``: 2
        when the training rows are taken as normal (``contamination="auto"``), 5 when
        ``contamination`` gives a share of anomalies among them. The
        model keeps those coordinates for up to 4,096 training rows. ``0`` turns the
        component off, and then no training rows are kept.
    calibration_fraction : float, default=0.1
        Share of the training rows held back to normalize the score components.
    contamination : "auto" or float in (0, 0.5], default="auto"
        Expected share of anomalies in the training rows. ``"auto"`` treats them as clean
        and puts the threshold at the 99th percentile of the held-out normal rows'
        scores. A float c puts it at that quantile of the training rows' scores, and the
        ``neighbors`` component leaves out of its reference rows the 2c share that
        reconstructs worst, where the anomalies among them gather (see
        ``docs/scoring.md``).
    device : str, default="auto"
        ``"auto"`` uses CUDA when present, else CPU; or any torch device string.
    missing : {"error", "impute"}, default="error"
        What a missing cell (NaN, None, NaT or an empty text cell) does: ``"error"``
        refuses the rows, naming the column; ``"impute"`` fills it from the training rows
        (a numeric column's median, a categorical column's most frequent value), in
        ``fit`` and whenever rows are scored.
    id_columns : list of str, default=None
        Columns of a DataFrame ``X`` that identify rows (ids, timestamps): never features.
        The command line copies them into its score tables.
    drop_columns : list of str, default=None
        Columns of a DataFrame ``X`` to leave out of the features (free text, leaks).
    random_state : int, RandomState or None, default=None
        Seed for a reproducible fit: same data and seed give bit-identical scores on CPU.
    verbose : bool or int, default=False
        During fit, ``1`` (or True) shows a progress bar with the losses; ``2`` logs a
        line per epoch (losses and elapsed time) to the ``aae_anomaly`` logger at INFO
        level, for logs and batch jobs.

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
    n_neighbors_ : int
        The neighbours the ``neighbors`` component averages: ``n_neighbors``, or what
        ``"auto"`` chose.
    n_features_in_ : int
        Columns of ``X`` the model takes (for a DataFrame: without the id and dropped
        columns).
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame: its feature columns, which are found by name in
        the tables scored later (in any order).
    schema_ : TableSchema
        Only when ``X`` was a DataFrame or ``missing="impute"``: each column's kind
        (numeric, boolean, categorical with its categories), the values missing cells
        take, and the columns left out (see :mod:`aae_anomaly.estimators.columns`).
    input_range_ : ndarray of shape (2, channels)
        Only for image models (an input shape of several dimensions): the smallest and
        largest training value of each channel, the grey scale of pictures of samples.
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
        n_neighbors: int | str = "auto",
        calibration_fraction: float = 0.1,
        contamination: str | float = "auto",
        device: str = "auto",
        missing: str = "error",
        id_columns: list[str] | None = None,
        drop_columns: list[str] | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool | int = False,
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
        self.missing = missing
        self.id_columns = id_columns
        self.drop_columns = drop_columns
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
        region of the latent space (see :mod:`aae_anomaly.scoring.conditioning`). It needs
        a prior with a region per class: ``mixture`` (``n_components``) or ``swiss_roll``
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
        X, image_shape = training_rows(self, X, y)
        self.n_neighbors_ = fitting.neighbors_k(self.n_neighbors, self.contamination)
        known_anomalies = None
        if anomaly_labels is not None:
            X, classes, known_anomalies = labels.without_known_anomalies(
                X, classes, anomaly_labels, self.n_neighbors_
            )
        class_index = None
        if classes is not None:
            normal_classes, class_index = labels.encode_classes(classes, len(X))
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_index, calibration_index = calibration.split_calibration(
            len(X), self.calibration_fraction, rng
        )
        train_rows = X[train_index]
        train_classes = None if class_index is None else class_index[train_index]
        group = current_group()
        checkpoint = fitting.open_checkpoint(
            self, checkpoint_dir, train_rows, resume, train_classes, group
        )
        architecture, input_shape = architecture_and_input_shape(self, image_shape, X.shape[1])
        self.latent_dim_ = resolved_latent_dim(self.latent_dim, X.shape[1])
        prior = create_prior(self.prior, self.latent_dim_, self.prior_params or {})
        self.__dict__.pop("normal_classes_", None)
        if class_index is not None:
            check_prior(prior, self.prior, len(normal_classes))
            self.normal_classes_ = normal_classes
        reference = fitting.capped(train_rows, rng) if self.n_neighbors_ else None
        known_anomalies = fitting.capped(known_anomalies, rng)
        device = resolve_device(self.device)
        with seeded(seed, device) as generator, flush_denormals():
            module = self._build(architecture, input_shape, train_rows, reference, known_anomalies)
            module = module.to(device)
            value_range = channel_range(train_rows, input_shape)  # of all rows, every rank
            if group is not None:
                # every rank has every row and builds the same networks (the trainer's
                # wrappers broadcast rank 0's weights); it trains on its own shard and
                # draws its own samples (see engine.distributed)
                group.broadcast_buffers(module)
                generator.manual_seed(rank_seed(seed, group.rank))
                shard = group.shard(len(train_rows))
                train_rows = train_rows[shard]
                train_classes = None if train_classes is None else train_classes[shard]
            self.history_ = self._train(
                module, prior, train_rows, train_classes, generator, checkpoint,
                reference, known_anomalies, group,
            )
            if group is not None:
                generator.manual_seed(seed)  # the reference's order: alike on every rank
            self._prepare_reference(module, generator)
            self.__dict__.pop("distributed_", None)
            if group is not None:
                self.distributed_ = group.describe()
            self.module_, self.prior_, self.device_ = module, prior, device
            self.input_shape_ = input_shape
            self.__dict__.pop("input_range_", None)
            if value_range is not None:
                self.input_range_ = value_range
            self._calibrate(X, calibration_index)
        return self

    def fit_chunks(
        self,
        chunks,
        *,
        sample_rows: int = streaming.DEFAULT_SAMPLE_ROWS,
        shuffle_rows: int = streaming.DEFAULT_SHUFFLE_ROWS,
        checkpoint_dir=None,
        resume: bool = False,
    ):
        """Fit on normal rows that come in parts, more than memory may hold.

        ``chunks`` is a callable that starts a new pass over the parts each time it is
        called (e.g. ``lambda: pandas.read_csv(path, chunksize=65536)``), each part a
        DataFrame or an array, as ``fit`` takes them. The parts are read once to draw a
        uniform sample of ``sample_rows`` rows, from which the table's schema, the input
        scaling, the calibration rows and the reference rows are learned, then once per
        epoch to train on every row but the calibration ones, in batches drawn from a
        shuffle buffer of ``shuffle_rows`` rows; memory holds the sample, the buffer and
        one part. With fewer rows than ``sample_rows`` the statistics are those of all
        rows; :mod:`aae_anomaly.estimators.streaming` says what differs otherwise.
        ``streamed_rows_`` is the number of rows read in a pass.

        Under ``torch.distributed`` (e.g. ``torchrun``), each process reads only its own
        part of the rows when ``chunks`` takes a ``part`` keyword: ``chunks(part=(rank,
        world_size))`` starts a pass over that part (as
        :func:`~aae_anomaly.plugin_system.datasets.load_dataset_chunks` reads one);
        otherwise each reads every row and keeps every ``world_size``-th. The processes
        merge their samples into one, so that the statistics are the same on each, and
        train with ``DistributedDataParallel``, each epoch as many batches on each (see
        :mod:`aae_anomaly.estimators.streaming`); ``streamed_rows_`` counts the rows of
        all parts.

        ``checkpoint_dir`` and ``resume`` work as in :meth:`fit` (in a distributed fit,
        each process keeps its own file there). The checkpoint is identified by the
        parameters, ``sample_rows`` and ``shuffle_rows``, a digest of every row read and
        of the parts' sizes (taken in the first pass, only when checkpointing), and one
        of the sample's training rows; the first pass is seeded, so a resumed fit
        learns the same statistics and ends with the model an uninterrupted one gives.
        """
        self._check_params()
        check_int("sample_rows", sample_rows)
        check_int("shuffle_rows", shuffle_rows)
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        if not callable(chunks):
            raise TypeError(
                "chunks must be a callable that returns a new iterator over the parts each "
                f"time (the rows are read once per epoch), got {type(chunks).__name__}"
            )
        group = current_group()
        # before the pass over the rows, which may be long
        fitting.check_checkpoint_dir(self, checkpoint_dir, resume, group)
        checkpointed = checkpoint_dir is not None
        rng = check_random_state(self.random_state)
        shared = None
        if group is None:
            digest = streaming.RowsDigest() if checkpointed else None
            sample, numbers, n_rows = streaming.reservoir(
                chunks(), sample_rows, rng, digest=digest
            )
            own_chunks = chunks
            rows_identity = None if digest is None else digest.identity()
        else:
            shared = streaming.shared_sample(chunks, sample_rows, rng, group, checkpointed)
            sample, numbers, n_rows, rng = shared.sample, shared.numbers, shared.n_rows, shared.rng
            own_chunks = shared.chunks
            rows_identity = shared.digest
        X, image_shape = training_rows(self, sample, None)
        self.n_neighbors_ = fitting.neighbors_k(self.n_neighbors, self.contamination)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_index, calibration_index = calibration.split_calibration(
            len(X), self.calibration_fraction, rng
        )
        if isinstance(calibration_index, slice):  # too few rows to hold any back
            held_back = np.empty(0, dtype=np.int64)
        else:
            held_back = np.sort(numbers[calibration_index])
        batch_size, steps = max(1, self.batch_size), None
        if shared is not None:
            # the ranks' batches together make one batch of batch_size rows (as in fit),
            # and every rank takes as many steps an epoch (see streaming)
            batch_size = -(-batch_size // group.world_size)
            steps = shared.steps(held_back, batch_size)
            held_back = shared.own(held_back)
        train_sample = X[train_index]
        checkpoint = None
        if checkpointed:
            stream = {
                "rows": n_rows, **rows_identity, "sample_rows": sample_rows,
                "shuffle_rows": shuffle_rows,
            }  # fmt: skip
            if shared is not None:
                stream["part_rows"] = shared.counts.tolist()
            checkpoint = fitting.open_checkpoint(
                self, checkpoint_dir, train_sample, resume, None, group, streamed=stream
            )
        architecture, input_shape = architecture_and_input_shape(self, image_shape, X.shape[1])
        self.latent_dim_ = resolved_latent_dim(self.latent_dim, X.shape[1])
        prior = create_prior(self.prior, self.latent_dim_, self.prior_params or {})
        self.__dict__.pop("normal_classes_", None)
        self.__dict__.pop("distributed_", None)
        reference = fitting.capped(train_sample, rng) if self.n_neighbors_ else None
        device = resolve_device(self.device)
        self.input_shape_ = input_shape  # the parts are checked against it
        # an image model's grey scale, as fit keeps it: the sample's training rows' range
        # (all training rows' when they are fewer than sample_rows)
        self.__dict__.pop("input_range_", None)
        value_range = channel_range(train_sample, input_shape)
        if value_range is not None:
            self.input_range_ = value_range
        names = getattr(self, "feature_names_in_", None)
        schema = getattr(self, "schema_", None)
        if schema is not None:
            names = schema.encoded_names()

        def encode(part) -> np.ndarray:
            rows = fitted_rows(self, part, ensure_all_finite=False)
            check_values(rows, names, limit=FLOAT32_MAX)
            return rows

        with seeded(seed, device) as generator, flush_denormals():
            module = self._build(architecture, input_shape, train_sample, reference, None)
            module = module.to(device)
            if group is not None:
                # the same statistics on every rank; the trainer's wrappers broadcast rank
                # 0's weights, and each rank draws its own shuffles and samples
                group.broadcast_buffers(module)
                generator.manual_seed(rank_seed(seed, group.rank))

            def batches():
                batches = streaming.training_batches(
                    encode, own_chunks(), held_back, batch_size, shuffle_rows, generator, device
                )
                return batches if steps is None else itertools.islice(batches, steps)

            with compute_threads(module, device) as workers:
                config = dataclasses.replace(training_config(self), batch_size=batch_size)
                trainer = StreamingTrainer(module, prior, batches, config, generator, group)
                self.history_ = fitting.train(
                    self, trainer, checkpoint, show=group is None or group.is_main
                )
                del trainer
                if group is not None:
                    group.check_same_weights(module)
                    self.distributed_ = group.describe()
                    generator.manual_seed(seed)  # the reference's order: alike on every rank
                if reference is not None:
                    module.reference.copy_(
                        joint_coordinates(module, reference, None, device, workers)
                    )
                    self._prepare_reference(module, generator)
            self.module_, self.prior_, self.device_ = module, prior, device
            self._calibrate(X, calibration_index)
        self.streamed_rows_ = n_rows
        return self

    def _build(self, architecture, input_shape, train_rows, reference, known_anomalies):
        """The untrained networks, with the input scaling of ``train_rows``."""
        per_sample = scales_samples(self.scaling, input_shape)
        center, scale = input_scaling(
            train_rows, self.reconstruction_loss, scaling_groups(self.scaling, input_shape),
            input_shape if per_sample else None,
        )
        return build_detector_module(
            self, architecture, input_shape, center, scale,
            0 if reference is None else len(reference),
            0 if known_anomalies is None else len(known_anomalies),
            sample_statistics(train_rows, input_shape) if per_sample else None,
        )

    def _train(
        self, module, prior, train_rows, train_classes, generator, checkpoint, reference,
        known_anomalies, group=None,
    ) -> dict[str, list[float]]:
        """Train ``module``, then fill its reference sets: the (code, residual) coordinates
        of the ``reference`` normal rows and of the known anomalies."""
        device = module.center.device
        rows = torch.tensor(train_rows, dtype=torch.float32, device=device)
        row_classes = None
        if train_classes is not None:
            row_classes = torch.as_tensor(train_classes, device=device)
        with compute_threads(module, device) as workers:
            config = training_config(self)
            if group is not None:
                # the ranks' batches together make one batch of batch_size rows, so a
                # step averages as many rows as in a fit on one process
                config = dataclasses.replace(
                    config, batch_size=-(-config.batch_size // group.world_size)
                )
            trainer = Trainer(module, prior, rows, config, generator, row_classes, group)
            history = fitting.train(self, trainer, checkpoint, show=group is None or group.is_main)
            if group is not None:
                group.check_same_weights(module)
            del rows, trainer
            for buffer, kept in ((module.reference, reference),
                                 (module.anomaly_reference, known_anomalies)):
                if kept is not None:
                    buffer.copy_(joint_coordinates(module, kept, None, device, workers))
        return history

    def _prepare_reference(self, module, generator) -> None:
        """When the training rows are said to hold anomalies (``contamination`` a float):
        leave out the reference rows most likely to be anomalies, and put the rest in a
        random order whose slices the neighbour search averages over."""
        reference = fitting.trimmed_reference(
            module.reference, module.latent_dim, self.contamination
        )
        groups = fitting.reference_groups(len(reference), self.n_neighbors_, self.contamination)
        if groups > 1:
            order = np.random.default_rng(generator.initial_seed()).permutation(len(reference))
            reference = reference[torch.as_tensor(order, device=reference.device)]
        module.reference = reference.contiguous()
        module.reference_groups = groups
        module.input_candidates = fitting.input_candidates(module, self.contamination)

    def _calibrate(self, X: np.ndarray, calibration_index) -> None:
        """Normalize the components on the held-out normal rows (``X[calibration_index]``;
        all rows when none could be held back) and set the threshold; on a clean fit, the
        held-out rows then join the reference (``fitting.adds_held_out_rows``)."""
        names = available_components(self.module_, self.prior_)
        weights = calibration.checked_weights(self.score_weights, names)
        held_out = X[calibration_index]
        n_held_out = 0 if isinstance(calibration_index, slice) else len(held_out)
        if "neighbors" in names and fitting.adds_held_out_rows(
            self.module_, n_held_out, self.contamination
        ):
            searched = {"neighbors", "inputs"}
            held = self._raw_components(held_out, wanted=set(names) - searched)
            with inference_threads(self.module_, self.device_) as workers:
                joint = joint_coordinates(self.module_, held_out, None, self.device_, workers)
            distances, inputs = fitting.add_held_out_rows(self.module_, joint, self.n_neighbors_)
            held["neighbors"] = distances.double().cpu().numpy()
            if inputs is not None:
                held["inputs"] = inputs.double().cpu().numpy()
            held = {name: held[name] for name in names}  # the scorer's order of components
        else:
            held = self._raw_components(held_out)
        self.calibration_ = ScoreCalibration.fit(held, weights)
        training = None
        if self.contamination != "auto":
            training = self._raw_components(X, wanted=self.calibration_.weighted())
        self.offset_ = calibration.threshold_offset(
            self.calibration_, held, training, self.contamination
        )

    def _check_params(self) -> None:
        check_detector_params(self)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "impute"
        return tags

    # -- scoring ---------------------------------------------------------------------------
    def _raw_components(
        self, rows: np.ndarray, classes=None, chosen_classes=None, wanted=None
    ) -> dict[str, np.ndarray]:
        with inference_threads(self.module_, self.device_) as workers:
            return raw_components(
                self.module_, self.prior_, rows, None, self.device_, workers,
                self.n_neighbors_, classes, chosen_classes, wanted,
            )

    def score_components(self, X, *, classes=None) -> dict[str, np.ndarray]:
        """Each raw score component per sample, and the combined ``score``.

        Keys: ``reconstruction``, ``discriminator``, ``density`` (for priors with a
        density), ``neighbors`` and ``inputs`` (see ``docs/scoring.md`` for when each is
        there) and ``score``; larger values are more anomalous in every one. For a model
        fitted with ``classes``, there is also ``class``: the class each row was scored
        as, its given one (``classes``) or else its best-matching one.
        """
        rows = scoring_rows(self, X)
        given = labels.conditioning_classes(self, classes, len(rows))
        chosen = None
        if getattr(self, "normal_classes_", None) is not None:
            chosen = np.empty(len(rows), dtype=np.int64)
        components = self._raw_components(rows, given, chosen)
        components["score"] = finite(self.calibration_.combine(components), "scores")
        if chosen is not None:
            components["class"] = self.normal_classes_[chosen]
        return components

    def score_samples(self, X, *, classes=None) -> np.ndarray:
        """Opposite of the anomaly score: the higher, the more normal.

        ``classes``: for a model fitted with classes, each row's class (else each row is
        scored in the region of its best-matching class)."""
        rows = scoring_rows(self, X)
        components = self._raw_components(
            rows,
            labels.conditioning_classes(self, classes, len(rows)),
            wanted=self.calibration_.weighted(),
        )
        return -finite(self.calibration_.combine(components), "scores")

    def decision_function(self, X, *, classes=None) -> np.ndarray:
        """Shifted score: negative for outliers, positive for inliers."""
        return self.score_samples(X, classes=classes) - self.offset_

    def predict(self, X, *, classes=None) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X, classes=classes) < 0, -1, 1)

    # -- latent space ----------------------------------------------------------------------
    def transform(self, X) -> np.ndarray:
        """Latent codes (the posterior mean) of ``X``, shape ``(n, latent_dim)``."""
        rows = scoring_rows(self, X)
        with inference_threads(self.module_, self.device_) as workers:
            codes = encode_rows(self.module_, rows, None, self.device_, workers)
        return finite(codes, "latent codes")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the ``transform`` output columns: ``latent0``, ``latent1``, ..."""
        check_is_fitted(self)
        return np.asarray([f"latent{i}" for i in range(self.latent_dim_)], dtype=object)

    def sample(self, n_samples: int = 1, random_state=None, *, classes=None) -> np.ndarray:
        """Draw ``n_samples`` new rows: prior samples passed through the decoder.

        ``classes`` (a model fitted with classes): one class for all samples, or one per
        sample; each is drawn from its class's region of the prior."""
        check_is_fitted(self)
        check_int("n_samples", n_samples)
        given = None
        if classes is not None:
            if np.ndim(classes) == 0:
                classes = [classes] * n_samples
            given = labels.conditioning_classes(self, classes, n_samples)
            given = torch.as_tensor(given).to(self.device_)
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        module = inference_ready(self.module_)
        with seeded(seed, self.device_) as generator, torch.inference_mode():
            if given is None:
                z = self.prior_.sample(n_samples, generator)
            else:
                z = self.prior_.sample(n_samples, generator, labels=given)
            rows = module.unscale_output(module.decode(z))
        return rows.double().cpu().numpy()

    # -- model files -----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted detector to one safetensors file, atomically; read it back with
        :func:`aae_anomaly.load`. The file holds no pickle and runs no code when loaded."""
        from .persistence import save_detector

        save_detector(self, path)

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: Python 3.11+ returns __dict__ itself
        module = state.get("module_")
        if module is not None and state["device_"].type != "cpu":
            # CUDA tensors in a pickle fail to load where there is no GPU; a CPU copy loads
            # anywhere. The detector in memory stays on its device.
            state["module_"] = copy.deepcopy(module).cpu()
            state["device_"] = torch.device("cpu")
        return state
