"""The priors, encoder architectures and dataset loaders that ship with aae-anomaly.

They are ordinary plugins: ``pyproject.toml`` lists these modules in the ``aae_anomaly``
entry-point group, and the core finds them the way it finds a third party's.
"""
