"""Built-in priors: sampling, densities checked against independent references, labels."""

import math

import pytest
import torch

from aae_anomaly import DensityUnavailableError
from aae_anomaly.plugin_system.manager import get_plugin_manager

PRIORS = ["gaussian", "mixture", "swiss_roll", "uniform"]


def make(name, latent_dim=4, **options):
    return get_plugin_manager().create("prior", name, latent_dim, **options)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", PRIORS)
@pytest.mark.parametrize("latent_dim", [2, 3, 8])
def test_samples_have_the_latent_shape_and_are_finite(name, latent_dim):
    z = make(name, latent_dim).sample(500, generator())
    assert z.shape == (500, latent_dim)
    assert z.dtype == torch.float32
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("name", PRIORS)
def test_the_generator_alone_decides_the_samples(name):
    prior = make(name)
    torch.manual_seed(123)  # the global RNG must play no part
    first = prior.sample(64, generator(7))
    torch.manual_seed(456)
    assert torch.equal(first, prior.sample(64, generator(7)))
    assert not torch.equal(first, prior.sample(64, generator(8)))


def test_gaussian_density_matches_torch_distributions():
    prior = make("gaussian", 3, std=2.0)
    z = torch.randn(50, 3)
    expected = torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(dim=1)
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_gaussian_samples_have_the_stated_spread():
    z = make("gaussian", 2, std=2.0).sample(20000, generator())
    assert abs(z.std().item() - 2.0) < 0.05
    assert abs(z.mean().item()) < 0.05


def test_mixture_density_matches_a_reference_mixture():
    prior = make("mixture", 2, n_components=5, radius=2.0, radial_std=0.5, tangential_std=0.1)
    angles = torch.arange(5) * 2 * math.pi / 5
    direction = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    normal = torch.stack([-torch.sin(angles), torch.cos(angles)], dim=1)
    covariance = (
        0.25 * direction.unsqueeze(2) * direction.unsqueeze(1)
        + 0.01 * normal.unsqueeze(2) * normal.unsqueeze(1)
    )
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(5)),
        torch.distributions.MultivariateNormal(2.0 * direction, covariance),
    )
    z = prior.sample(200, generator())
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), rtol=1e-4, atol=1e-4)


def test_mixture_density_integrates_to_one_in_two_dimensions():
    prior = make("mixture", 2)
    grid = torch.linspace(-4, 4, 801)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    density = prior.log_prob(torch.stack([xx.ravel(), yy.ravel()], dim=1)).exp()
    cell = (grid[1] - grid[0]) ** 2
    assert abs((density.sum() * cell).item() - 1.0) < 1e-2


def test_uniform_density_is_constant_inside_and_zero_outside():
    prior = make("uniform", 3, half_width=2.0)
    inside = torch.tensor([[0.0, 1.0, -1.9]])
    outside = torch.tensor([[0.0, 2.5, 0.0]])
    assert prior.log_prob(inside).item() == pytest.approx(-3 * math.log(4.0))
    assert prior.log_prob(outside).item() == -math.inf
    z = prior.sample(1000, generator())
    assert (z.abs() <= 2.0).all()


def test_swiss_roll_says_clearly_it_has_no_density():
    prior = make("swiss_roll")
    assert not prior.has_density
    with pytest.raises(DensityUnavailableError, match="no closed-form density"):
        prior.log_prob(torch.zeros(3, 4))


def test_mixture_samples_by_label_come_from_that_component():
    prior = make("mixture", 2, n_components=10)
    labels = torch.arange(10).repeat_interleave(50)
    z = prior.sample(500, generator(), labels=labels)
    nearest = prior.log_prob_per_component(z).argmax(dim=1)
    assert (nearest == labels).float().mean() > 0.99


def test_swiss_roll_samples_by_label_come_from_that_segment():
    prior = make("swiss_roll", 2, n_segments=5, noise=0.0)
    radius = {k: prior.sample(200, generator(), labels=torch.full((200,), k)).norm(dim=1)
              for k in range(5)}
    # segment k covers u in [k/5, (k+1)/5), radius = 3 sqrt(u): disjoint rings
    for k in range(5):
        assert radius[k].min() >= 3 * math.sqrt(k / 5) - 1e-5
        assert radius[k].max() <= 3 * math.sqrt((k + 1) / 5) + 1e-5


@pytest.mark.parametrize("name", ["gaussian", "uniform"])
def test_unconditional_priors_refuse_labels(name):
    with pytest.raises(ValueError, match="cannot sample by class label"):
        make(name).sample(3, generator(), labels=torch.zeros(3, dtype=torch.long))


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        make("mixture").sample(2, generator(), labels=torch.tensor([0, 10]))


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("gaussian", {"std": 0.0}, "std must be positive"),
        ("mixture", {"radius": -1.0}, "must be positive"),
        ("uniform", {"half_width": 0.0}, "half_width must be positive"),
    ],
)
def test_bad_options_are_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        make(name, **options)


@pytest.mark.parametrize("name", PRIORS)
def test_options_rebuild_an_equal_prior(name):
    prior = make(name, 3)
    rebuilt = make(name, 3, **prior.options())
    assert torch.equal(prior.sample(20, generator()), rebuilt.sample(20, generator()))


def test_mixture_sampler_has_the_moments_its_density_states():
    # a density that disagrees with the sampler would make the density score meaningless
    prior = make("mixture", 2, n_components=4, radius=2.0, radial_std=0.5, tangential_std=0.1)
    z = prior.sample(8000, generator(), labels=torch.full((8000,), 1)).double()
    # component 1 sits at angle pi/2: radial spread along y, tangential along x
    torch.testing.assert_close(z.mean(dim=0), torch.tensor([0.0, 2.0]).double(), atol=0.02, rtol=0)
    torch.testing.assert_close(
        torch.cov(z.T), torch.diag(torch.tensor([0.01, 0.25])).double(), atol=0.01, rtol=0
    )
