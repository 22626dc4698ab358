"""Every hook is documented in docs/plugins.md, with its exact signature and an example,
as datasette's ``test_plugin_hooks_are_documented`` does for its hooks."""

import inspect
import re
from pathlib import Path

import pytest

from aae_anomaly.plugin_system import hookspecs

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
HOOKS_SECTION = "## The hooks"


def _hookspecs() -> dict[str, object]:
    # pluggy marks each hookspec function with a ``<project>_spec`` attribute
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, marker)
    }


def _signature(name: str, function) -> str:
    """``register_priors(register)``: what a plugin writes after ``def``. Annotations are
    left out, so that adding one to a hookspec does not force the docs to repeat it."""
    signature = inspect.signature(function)
    parameters = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
    bare = signature.replace(parameters=parameters, return_annotation=signature.empty)
    return f"{name}{bare}"


def _hook_sections() -> dict[str, tuple[str, str]]:
    """Hook name -> (the signature in its heading, the text under it), for the level-3
    headings of the form ### `name(...)` in the hooks section of the guide."""
    guide = GUIDE.read_text()
    assert HOOKS_SECTION in guide, f"{GUIDE.name} has no {HOOKS_SECTION!r} section"
    section = guide.split(HOOKS_SECTION, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.M)[0]
    parts = re.split(r"^### `((\w+)\(.*?\))`[ \t]*$", section, flags=re.M)
    # re.split gives [intro, signature, name, body, signature, name, body, ...]
    return {
        name: (signature, body)
        for signature, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True)
    }


HOOKS = _hookspecs()


def test_the_hookspecs_are_found():
    # guards the parametrization below: an empty list would make it pass vacuously
    assert {"register_priors", "register_encoders", "register_datasets"} <= set(HOOKS)


@pytest.mark.parametrize("hook_name", sorted(HOOKS))
def test_plugin_hook_is_documented_with_its_signature(hook_name):
    expected = _signature(hook_name, HOOKS[hook_name])
    sections = _hook_sections()
    assert hook_name in sections, (
        f"hook {hook_name} is not documented: {GUIDE.name} needs a heading "
        f"### `{expected}` under {HOOKS_SECTION!r}"
    )
    documented, _ = sections[hook_name]
    assert documented == expected, (
        f"hook {hook_name} is documented as `{documented}` in {GUIDE.name}, "
        f"but its signature is `{expected}`"
    )


@pytest.mark.parametrize("hook_name", sorted(HOOKS))
def test_plugin_hook_documentation_has_an_example(hook_name):
    _, body = _hook_sections().get(hook_name, ("", ""))
    expected = f"@hookimpl\ndef {_signature(hook_name, HOOKS[hook_name])}:"
    assert expected in body, (
        f"the documentation of hook {hook_name} in {GUIDE.name} has no example "
        f"implementing it ({expected!r})"
    )


def test_every_documented_hook_exists():
    # a hook renamed or removed in hookspecs.py must not live on in the docs
    stale = sorted(set(_hook_sections()) - set(HOOKS))
    assert not stale, f"{GUIDE.name} documents hooks that hookspecs.py does not have: {stale}"
