"""Label-conditioned regularization (Makhzani et al., 2015, section 2.3).

When the normal rows come in known classes (product types, machines, digits), ``fit(X,
classes=...)`` gives each class its own region of the latent space: prior samples for a
row of class ``k`` come from the prior's ``k``-th region (a mixture component, a segment
of the swiss roll), and the discriminator sees the one-hot class vector after the prior
sample and after the code, so the encoder learns to put class ``k`` into region ``k``.

Scoring a row uses one class: the one given for it, or else its best-matching class, the
region of highest prior density ``p(z | k)`` (for priors whose regions have densities, the
mixture) or the class whose discriminator calls the code most real (otherwise). The
``discriminator`` component is then ``-D(z, k)`` and the ``density`` component
``-log p(z | k)``; reconstruction and neighbors do not depend on the class.
"""

from __future__ import annotations

import math

import torch

from ..plugin_system.priors import Prior


def check_prior(prior: Prior, prior_name: str, n_classes: int) -> None:
    """Raise ValueError unless ``prior`` can sample a region for each of ``n_classes``."""
    if prior.n_classes is None or prior.n_classes < n_classes:
        can = (
            "cannot sample by class"
            if prior.n_classes is None
            else f"has only {prior.n_classes} regions"
        )
        raise ValueError(
            f"fitting with {n_classes} classes needs a prior with a region per class, but "
            f"the {prior_name!r} prior {can}; use prior='mixture' with "
            f"prior_params={{'n_components': {n_classes}}} or prior='swiss_roll' with "
            f"{{'n_segments': {n_classes}}}"
        )


def class_log_densities(prior: Prior, z: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """``log p(z | k)`` for the first ``n_classes`` regions, shape ``(n, n_classes)``, or
    ``None`` when the prior has no per-region density."""
    per_component = getattr(prior, "log_prob_per_component", None)
    if per_component is None:
        return None
    # log_prob_per_component holds log p(z | k) + log p(k), with p(k) = 1 / prior.n_classes
    return per_component(z)[:, :n_classes] + math.log(prior.n_classes)


def conditioned_values(
    module, prior: Prior, z: torch.Tensor, given: torch.Tensor | None, with_density: bool
) -> dict[str, torch.Tensor]:
    """The class-dependent components of codes ``z`` and the class each used: the given
    one, or the best-matching one."""
    n, k = len(z), module.n_classes
    one_hot = torch.eye(k, device=z.device, dtype=z.dtype)
    pairs = torch.cat([z.repeat_interleave(k, dim=0), one_hot.repeat(n, 1)], dim=1)
    logits = module.discriminator(pairs).reshape(n, k)
    log_densities = class_log_densities(prior, z, k)
    if given is not None:
        chosen = given
    elif log_densities is not None:
        chosen = log_densities.argmax(dim=1)
    else:
        chosen = logits.argmax(dim=1)
    values = {"discriminator": -logits.gather(1, chosen[:, None]).squeeze(1), "class": chosen}
    if with_density:
        if log_densities is not None:
            values["density"] = -log_densities.gather(1, chosen[:, None]).squeeze(1)
        else:
            values["density"] = -prior.log_prob(z)
    return values
