"""The paper's AAE family beyond anomaly detection, as scikit-learn estimators.

- :class:`SupervisedAAE`: the decoder is given the class, so the code learns the style
  apart from the class; ``sample(n, y=k)`` draws class ``k`` in new or chosen styles
  (Makhzani et al., 2015, section 4).
- :class:`AAEClassifier`: semi-supervised classification; ``y = -1`` marks an unlabelled
  row, as in scikit-learn's semi-supervised estimators (section 5).
- :class:`AAEClustering`: unsupervised clustering into ``n_clusters`` categories
  (section 6).

All three train a :class:`~aae_anomaly.engine.categorical.CategoricalAAEModule`, whose
code is a class part and a Gaussian style part (see that module for the phases).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..engine.categorical import (
    UNLABELLED,
    CategoricalAAEModule,
    CategoricalTrainer,
    CategoricalTrainingConfig,
    decode_categorical,
    encode_categorical,
)
from ..engine.distributed import current_group
from ..engine.inference import inference_threads
from ..engine.runtime import compute_threads, flush_denormals, resolve_device, seeded
from .building import architecture_and_input_shape, training_config
from .labels import fitted_class_indices, label_dtype, targets, unlabelled_rows
from .persistence import save_family
from .progress import progress_bar
from .scaling import FAMILY_SCALINGS, check_scaling, input_scaling, scaling_groups
from .validation import (
    check_dict_or_none,
    check_int,
    check_non_negative,
    check_positive_number,
    check_training_settings,
    fitted_rows,
    training_rows,
)

# The metrics the progress bar shows: shown name -> (metric, format).
_PROGRESS_METRICS = {
    "recon": ("reconstruction", ".4g"),
    "cls": ("classification", ".3f"),
    "acc": ("discriminator_accuracy", ".2f"),
}


class _CategoricalAAE(TransformerMixin, BaseEstimator):
    """Parameters, fitting and encoding shared by the family's estimators."""

    # set by each estimator: whether the encoder infers the class (else it is given)
    _infers_category = True

    def _check_params(self) -> None:
        check_int("style_dim", self.style_dim)
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        check_training_settings(self)
        check_scaling(self.scaling, FAMILY_SCALINGS)
        check_non_negative("input_noise", self.input_noise)
        check_dict_or_none(self, ("encoder_params",))

    def _category_regularization(self) -> dict[str, float]:
        """The checked weights of the terms on the inferred class distribution (the
        classifier's and the clustering's parameters)."""
        names = ("balance_weight", "sharpness_weight", "consistency_weight")
        for name in names:
            check_non_negative(name, getattr(self, name))
        check_positive_number("consistency_radius", self.consistency_radius)
        settings = {name: float(getattr(self, name)) for name in names}
        return {**settings, "consistency_radius": float(self.consistency_radius)}

    def _validated_training_rows(self, X) -> tuple[np.ndarray, tuple[int, ...] | None]:
        """Flat rows, and the image shape when ``X`` was a 4-D array of images."""
        self._check_params()
        return training_rows(self, X, None)

    def _fit_network(
        self,
        X: np.ndarray,
        image_shape: tuple[int, ...] | None,
        labels: np.ndarray | None,
        n_categories: int,
        **extra,
    ) -> None:
        """Train the networks on validated rows ``X``; ``labels`` holds class indices, or
        :data:`UNLABELLED`."""
        architecture, input_shape = architecture_and_input_shape(self, image_shape, X.shape[1])
        infers = self._infers_category
        code_size = self.style_dim + (n_categories if infers else 0)
        if current_group() is not None:
            raise ValueError(
                f"{type(self).__name__} trains in one process; distributed training "
                "(torchrun) is for AAEDetector (aae-anomaly fit)"
            )
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        device = resolve_device(self.device)
        with seeded(seed, device) as generator, flush_denormals():
            center, scale = input_scaling(
                X, self.reconstruction_loss, scaling_groups(self.scaling, input_shape)
            )
            encoder, decoder = architecture.build(
                input_shape, n_categories + self.style_dim, code_size
            )
            module = CategoricalAAEModule(
                encoder, decoder, input_shape, n_categories, self.style_dim, infers,
                self.reconstruction_loss, torch.from_numpy(center), torch.from_numpy(scale),
            ).to(device)
            rows = torch.tensor(X, dtype=torch.float32, device=device)
            row_labels = None if labels is None else torch.as_tensor(labels, device=device)
            with compute_threads(module, device):
                config = training_config(
                    self, CategoricalTrainingConfig, input_noise=float(self.input_noise), **extra
                )
                trainer = CategoricalTrainer(module, rows, row_labels, config, generator)
                self.history_ = trainer.fit(progress_bar(self, _PROGRESS_METRICS))
        self.module_, self.device_, self.input_shape_ = module, device, input_shape

    def _encoded(self, X, checked: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
        """Class probabilities and style codes of new rows (``checked``: rows that are
        already the networks' numbers, as the fit's own)."""
        if not checked:
            X = fitted_rows(self, X)
        with inference_threads(self.module_, self.device_) as workers:
            return encode_categorical(self.module_, X, None, self.device_, workers)

    def transform(self, X) -> np.ndarray:
        """Style codes (the continuous part of the code), shape ``(n, style_dim)``."""
        return self._encoded(X)[1]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the ``transform`` output columns: ``style0``, ``style1``, ..."""
        check_is_fitted(self)
        return np.asarray([f"style{i}" for i in range(self.style_dim)], dtype=object)

    def save(self, path) -> None:
        """Write the fitted estimator to one safetensors file, atomically; read it back
        with :func:`aae_anomaly.load` (no pickle, like a detector's model file)."""
        save_family(self, path)


_SHARED_PARAMETERS = """
    style_dim : int, default=8
        Size of the style code, the continuous part of the code (held to a standard
        Gaussian prior).
    encoder : str, default="mlp"
        Encoder architecture plugin (``mlp`` for rows, ``conv`` for images).
    encoder_params : dict, default=None
        Options of the architecture, e.g. ``{"hidden": [512, 256]}``.
    epochs : int, default=50
    batch_size : int, default=128
    lr_autoencoder, lr_discriminator, lr_generator : float
        Adam learning rates of the reconstruction step (also the classification step),
        the discriminators' step and the encoder's adversarial step.
    reconstruction_loss : {"mse", "l1", "bce"}, default="mse"
        ``bce`` (for images) scales inputs to [0, 1]; the others standardize them.
    scaling : {"auto", "per_feature", "shared"}, default="auto"
        Whose statistics scale the inputs: one centre and scale per channel for images
        (``auto``, ``shared``), one per column otherwise. Unlike ``AAEDetector``, no
        ``per_sample`` scaling: decoded images keep the data's intensities.
    input_noise : float, default=0.0
        Standard deviation of Gaussian noise added to the scaled inputs in training, a
        cheap regularizer when few rows are labelled.
    input_shape : tuple of int, default=None
        Per-sample shape for image architectures; inferred when ``None``.
    device : str, default="auto"
    random_state : int, RandomState or None, default=None
        Same data and seed give bit-identical results on CPU.
    verbose : bool or int, default=False
        During fit, ``1`` (or True) shows a progress bar; ``2`` logs a line per epoch
        (losses and elapsed time) to the ``aae_anomaly`` logger at INFO level.
"""


class SupervisedAAE(_CategoricalAAE):
    """Supervised adversarial autoencoder: the decoder reads the one-hot class and the
    style code, so the style code learns what the class does not say (slant, width,
    stroke), and ``sample(n, y=k)`` draws class ``k`` in new or chosen styles.
    """

    __doc__ += (
        "\n    Parameters\n    ----------" + _SHARED_PARAMETERS + """
    Attributes
    ----------
    classes_ : ndarray
        The classes seen in ``fit``, sorted.
    module_ : CategoricalAAEModule
    history_ : dict of list of float
        Per-epoch losses and the discriminator's accuracy.
"""
    )

    _infers_category = False

    def __init__(
        self,
        style_dim: int = 8,
        encoder: str = "mlp",
        encoder_params: dict | None = None,
        epochs: int = 50,
        batch_size: int = 128,
        lr_autoencoder: float = 1e-3,
        lr_discriminator: float = 5e-4,
        lr_generator: float = 1e-3,
        reconstruction_loss: str = "mse",
        input_noise: float = 0.0,
        scaling: str = "auto",
        input_shape: tuple[int, ...] | None = None,
        device: str = "auto",
        random_state=None,
        verbose: bool | int = False,
    ):
        self.style_dim = style_dim
        self.encoder = encoder
        self.encoder_params = encoder_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_autoencoder = lr_autoencoder
        self.lr_discriminator = lr_discriminator
        self.lr_generator = lr_generator
        self.reconstruction_loss = reconstruction_loss
        self.input_noise = input_noise
        self.scaling = scaling
        self.input_shape = input_shape
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Fit on rows ``X`` and the class ``y`` of every row."""
        X, image_shape = self._validated_training_rows(X)
        y = targets(X, y)
        self.classes_, labels = np.unique(y, return_inverse=True)
        self._fit_network(X, image_shape, labels.astype(np.int64), len(self.classes_))
        return self

    def sample(
        self, n_samples: int = 1, y=None, style=None, random_state=None, *, classes=None
    ) -> np.ndarray:
        """Draw ``n_samples`` rows of the given ``classes`` in style ``style``.

        ``classes``: one class for every sample, or one per sample; ``None`` draws classes
        uniformly (``y`` is its deprecated name, as ``AAEDetector.sample`` calls it
        ``classes``). ``style``: one style code (``(style_dim,)``, used for every sample)
        or one per sample (``(n_samples, style_dim)``), e.g. from ``transform``; ``None``
        draws styles from the Gaussian prior.
        """
        check_is_fitted(self)
        check_int("n_samples", n_samples)
        if y is not None:
            if classes is not None:
                raise TypeError("give classes alone; y is its deprecated name")
            warnings.warn(
                "SupervisedAAE.sample(y=...) is deprecated and will be removed in the next "
                "release; use sample(n, classes=...), as for AAEDetector",
                FutureWarning,
                stacklevel=2,
            )
            classes = y
        y = classes
        rng = check_random_state(random_state)
        if y is None:
            index = rng.randint(len(self.classes_), size=n_samples)
        else:
            values = np.asarray(y)
            values = np.full(n_samples, values.item()) if values.ndim == 0 else values
            if values.shape != (n_samples,):
                raise ValueError(
                    f"classes must be one class or one per sample ({n_samples}), got shape "
                    f"{values.shape}"
                )
            index = fitted_class_indices(self.classes_, values)
        if style is None:
            codes = rng.standard_normal((n_samples, self.style_dim))
        else:
            codes = np.asarray(style, dtype=np.float64)
            if codes.shape == (self.style_dim,):
                codes = np.tile(codes, (n_samples, 1))
            if codes.shape != (n_samples, self.style_dim) or not np.isfinite(codes).all():
                raise ValueError(
                    f"style must be finite, shaped ({self.style_dim},) or ({n_samples}, "
                    f"{self.style_dim}), got shape {np.shape(style)}"
                )
        device = self.device_
        category = torch.eye(len(self.classes_), device=device)[torch.as_tensor(index)]
        codes = torch.as_tensor(codes, dtype=torch.float32, device=device)
        with inference_threads(self.module_, device) as workers:
            return decode_categorical(self.module_, category, codes, workers)


_CATEGORY_TERMS = """    sharpness_weight : float, default=0.0
        Weight of the mean entropy of each row's class (category) distribution, asking
        each row for one class (0 turns it off).
    consistency_weight : float, default=0.0
        Weight of virtual adversarial training on ``q(y|x)`` (Miyato et al., 2018): the
        class distribution is held unchanged under the small input change that changes
        it most (0 turns it off; each step then costs two more encoder passes).
    consistency_radius : float, default=0.25
        That change's length, as a fraction of the median distance from a training row
        to its 10th nearest training row.
"""


class AAEClassifier(ClassifierMixin, _CategoricalAAE):
    """Semi-supervised classifier built on an adversarial autoencoder.

    The encoder gives each row a class distribution ``q(y|x)`` (a softmax, held to a
    categorical prior by one discriminator) and a style code (held to a Gaussian by a
    second); the decoder rebuilds the row from both; labelled rows also train ``q(y|x)``
    by cross-entropy. Rows labelled ``-1`` are unlabelled, scikit-learn's convention.
    """

    __doc__ += (
        "\n    Parameters\n    ----------"
        + _SHARED_PARAMETERS
        + """    label_weight : float, default=1.0
        Weight of the cross-entropy step on labelled rows.
    labelled_batch_size : int, default=32
        Labelled rows drawn (with replacement) for the cross-entropy step of every
        mini-batch, so a few labels are seen in every step.
    balance_weight : float, default=1.0
        Weight of the term that holds each batch's mean class distribution to uniform
        (an addition to the paper against all rows collapsing into one class; 0 turns it
        off).
"""
        + _CATEGORY_TERMS
        + """
    Attributes
    ----------
    classes_ : ndarray
        The classes of the labelled rows, sorted (``-1`` excluded).
    module_ : CategoricalAAEModule
    history_ : dict of list of float
        Per-epoch losses (``classification`` is the labelled rows' cross-entropy) and the
        discriminators' mean accuracy.
"""
    )

    def __init__(
        self,
        style_dim: int = 8,
        encoder: str = "mlp",
        encoder_params: dict | None = None,
        epochs: int = 50,
        batch_size: int = 128,
        lr_autoencoder: float = 1e-3,
        lr_discriminator: float = 5e-4,
        lr_generator: float = 1e-3,
        reconstruction_loss: str = "mse",
        input_noise: float = 0.0,
        scaling: str = "auto",
        input_shape: tuple[int, ...] | None = None,
        label_weight: float = 1.0,
        labelled_batch_size: int = 32,
        balance_weight: float = 1.0,
        sharpness_weight: float = 0.0,
        consistency_weight: float = 0.0,
        consistency_radius: float = 0.25,
        device: str = "auto",
        random_state=None,
        verbose: bool | int = False,
    ):
        self.style_dim = style_dim
        self.encoder = encoder
        self.encoder_params = encoder_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_autoencoder = lr_autoencoder
        self.lr_discriminator = lr_discriminator
        self.lr_generator = lr_generator
        self.reconstruction_loss = reconstruction_loss
        self.input_noise = input_noise
        self.scaling = scaling
        self.input_shape = input_shape
        self.label_weight = label_weight
        self.labelled_batch_size = labelled_batch_size
        self.balance_weight = balance_weight
        self.sharpness_weight = sharpness_weight
        self.consistency_weight = consistency_weight
        self.consistency_radius = consistency_radius
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Fit on rows ``X``; ``y`` holds each row's class, or ``-1`` when unlabelled."""
        X, image_shape = self._validated_training_rows(X)
        check_positive_number("label_weight", self.label_weight)
        check_int("labelled_batch_size", self.labelled_batch_size)
        regularization = self._category_regularization()
        y = targets(X, y, check=False)
        unlabelled = unlabelled_rows(y)
        if unlabelled.all():
            raise ValueError(
                "y marks every row unlabelled (-1); AAEClassifier needs labelled rows of at "
                "least 2 classes (use AAEClustering to group rows without labels)"
            )
        # -1 mixed with strings (an object array) is checked once the -1 rows are out
        check_classification_targets(y[~unlabelled])
        self.classes_ = np.unique(y[~unlabelled].astype(label_dtype(y[~unlabelled])))
        if len(self.classes_) < 2:
            raise ValueError(
                f"the labelled rows have only 1 class ({self.classes_[0]!r}); a classifier "
                "needs at least 2 classes"
            )
        labels = np.full(len(y), UNLABELLED, dtype=np.int64)
        labels[~unlabelled] = np.searchsorted(self.classes_, y[~unlabelled])
        self._fit_network(
            X, image_shape, labels, len(self.classes_),
            label_weight=float(self.label_weight),
            labelled_batch_size=int(self.labelled_batch_size),
            **regularization,
        )
        return self

    def predict_proba(self, X) -> np.ndarray:
        """``q(y|x)``: each row's probability of each class of ``classes_``."""
        return self._encoded(X)[0]

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row."""
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(axis=1)]


class AAEClustering(ClusterMixin, _CategoricalAAE):
    """Unsupervised clustering with an adversarial autoencoder.

    The classifier's networks without labels: the encoder's softmax over ``n_clusters``
    categories, held to a categorical prior (one-hot vectors drawn uniformly), becomes a
    cluster assignment, and the Gaussian style code keeps what varies within a cluster.
    Some categories may stay empty: ``labels_`` can use fewer than ``n_clusters``.
    """

    __doc__ += (
        "\n    Parameters\n    ----------\n    n_clusters : int, default=10\n        Number "
        "of categories (1 puts every row in one cluster, as KMeans does)."
        + _SHARED_PARAMETERS
        + """    balance_weight : float, default=1.0
        Weight of the term that holds each batch's mean category distribution to uniform
        (an addition to the paper: without it, all rows can collapse into one category;
        0 turns it off).
"""
        + _CATEGORY_TERMS
        + """
    Attributes
    ----------
    labels_ : ndarray of int
        The cluster of each training row.
    module_ : CategoricalAAEModule
    history_ : dict of list of float
"""
    )

    def __init__(
        self,
        n_clusters: int = 10,
        style_dim: int = 8,
        encoder: str = "mlp",
        encoder_params: dict | None = None,
        epochs: int = 50,
        batch_size: int = 128,
        lr_autoencoder: float = 1e-3,
        lr_discriminator: float = 5e-4,
        lr_generator: float = 1e-3,
        reconstruction_loss: str = "mse",
        input_noise: float = 0.0,
        scaling: str = "auto",
        input_shape: tuple[int, ...] | None = None,
        balance_weight: float = 1.0,
        sharpness_weight: float = 0.0,
        consistency_weight: float = 0.0,
        consistency_radius: float = 0.25,
        device: str = "auto",
        random_state=None,
        verbose: bool | int = False,
    ):
        self.n_clusters = n_clusters
        self.style_dim = style_dim
        self.encoder = encoder
        self.encoder_params = encoder_params
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_autoencoder = lr_autoencoder
        self.lr_discriminator = lr_discriminator
        self.lr_generator = lr_generator
        self.reconstruction_loss = reconstruction_loss
        self.input_noise = input_noise
        self.scaling = scaling
        self.input_shape = input_shape
        self.balance_weight = balance_weight
        self.sharpness_weight = sharpness_weight
        self.consistency_weight = consistency_weight
        self.consistency_radius = consistency_radius
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Cluster the rows of ``X``; ``y`` is not used."""
        X, image_shape = self._validated_training_rows(X)
        check_int("n_clusters", self.n_clusters)
        regularization = self._category_regularization()
        self._fit_network(X, image_shape, None, int(self.n_clusters), **regularization)
        # the fit's rows are already encoded: a table's text columns are numbers now
        self.labels_ = self._encoded(X, checked=True)[0].argmax(axis=1)
        return self

    def predict(self, X) -> np.ndarray:
        """The cluster of each row: its most probable category."""
        return self._encoded(X)[0].argmax(axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """Each row's probability of each of the ``n_clusters`` categories, shape
        ``(n, n_clusters)``; ``predict`` is its argmax."""
        return self._encoded(X)[0]

    def cluster_probabilities(self, X) -> np.ndarray:
        """Deprecated name of :meth:`predict_proba`, which scikit-learn users look for."""
        warnings.warn(
            "AAEClustering.cluster_probabilities is deprecated and will be removed in the "
            "next release; use predict_proba",
            FutureWarning,
            stacklevel=2,
        )
        return self.predict_proba(X)










