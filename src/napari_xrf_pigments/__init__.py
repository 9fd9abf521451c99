"""napari-xrf-pigments: pigment maps from macro X-ray fluorescence scans.

Importing this package is cheap: it loads no Qt, napari, TensorFlow or PyMca. Those are
imported inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["XRFCube", "EnergyAxis", "open_cube", "__version__"]


def __getattr__(name):
    # Lazy attributes keep `import napari_xrf_pigments` light.
    if name in ("XRFCube", "EnergyAxis"):
        from . import cube

        return getattr(cube, name)
    if name == "open_cube":
        from .io import open_cube

        return open_cube
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
