"""The private PyMca methods the two PyMca adapters call (physics/_pymca.py, fitting/_engine.py)
are there with the arguments we pass. pyproject pins PyMca5 to the tested minor version; a
release that renames or reshapes one fails here, naming it, not deep inside a fit."""

from __future__ import annotations

import inspect

import pytest

# (module, owner or None, method, the parameters we pass by name or position)
USED = [
    ("PyMca5.PyMcaPhysics.xrf.Elements", None, "_getUnfilteredElementDict", ("symbol", "energy")),
    ("PyMca5.PyMcaPhysics.xrf.Elements", None, "_getFluorescenceWeights",
     ("ele", "energy", "normalize", "cascade")),
    ("PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit", "FastXRFLinearFit", "_fitConfigure",
     ("configuration", "concentrations", "livetime", "weight", "nSpectra")),
    ("PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit", "FastXRFLinearFit", "_fitCreateModel", ("dtype",)),
    ("PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit", "FastXRFLinearFit", "_fitBkgAnchorList", ("config",)),
    ("PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit", "FastXRFLinearFit", "_fitMcaTrimInfo", ("x",)),
]


@pytest.mark.parametrize("module, owner, name, params", USED, ids=[u[2] for u in USED])
def test_private_pymca_methods_we_call_are_there(module, owner, name, params):
    import importlib

    import PyMca5

    where = importlib.import_module(module)
    if owner is not None:
        where = getattr(where, owner)
    target = f"{module}.{owner + '.' if owner else ''}{name}"
    method = getattr(where, name, None)
    assert method is not None, (
        f"PyMca5 {PyMca5.version()} has no {target}: the adapter calling it must follow PyMca")
    missing = [p for p in params if p not in inspect.signature(method).parameters]
    assert not missing, (
        f"PyMca5 {PyMca5.version()}: {target} no longer takes {missing}; the adapter calling it "
        "must follow PyMca")
