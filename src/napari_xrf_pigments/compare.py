"""Pigment maps against element maps (the paper's Fig. 5): pairing, clipping, scatter, figure.

The pieces the compare widget and scripts share, free of Qt and napari:

- :func:`default_elements`: the element maps that go with a pigment or a group of pigments,
  from the evidence elements of the pigment library (vermilion <-> ``"Hg L"``, emerald green
  <-> ``"Cu K"`` + ``"As K"``, lead white / red lead <-> ``"Pb L"``, ...);
- :func:`clip_limit` / :func:`normalise`: element maps clipped at their 99th percentile (the
  paper's way of balancing maps of very different dynamic range);
- :func:`scatter_data`: pigment probability against element concentration, one point per
  pixel in row-major order (point ``i`` is pixel ``divmod(i, columns)``);
- :func:`overlay_rgb`, :func:`comparison_figure`: the pigment in red over the elements in
  green and blue, and one row of Fig. 5 as a matplotlib figure (no pyplot, no GUI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .pigments._elements import ATOMIC_NUMBER

#: Percentile at which element maps are clipped (paper section 3.2).
CLIP_PERCENTILE = 99.0
#: Elements lighter than K (Z = 19) are left out of pairings: their lines (S K of vermilion,
#: Al K of cobalt blue, Na K of the arsenite) are weak or absorbed in air, not a pigment's tracer.
MIN_Z = 19
#: Line families tried for an element, in order, by atomic number: K lines up to Mo, K then L
#: around Sn (Sn K at 25 keV needs a high-voltage tube), L then M for heavy elements.
_FAMILY_ORDER = ((42, ("K",)), (56, ("K", "L")), (200, ("L", "M")))
#: At most this many element maps go with one pigment (red + green + blue).
MAX_ELEMENTS = 2


def _families(z: int) -> tuple[str, ...]:
    for top, families in _FAMILY_ORDER:
        if z <= top:
            return families
    return ("L", "M")


def default_elements(pigment: str, available: Sequence[str] | None = None, library=None) -> list[str]:
    """Element map names (PyMca groups) that trace a pigment, class or group, from the library.

    The elements XRF must see for it (its evidence, :meth:`PigmentLibrary.evidence_of`), by
    atomic number, at most two; each with the first line family that is available (K for
    light elements; Sn K, else Sn L; L for Pb and Hg). Examples: ``"VM"`` -> ``["Hg L"]``,
    ``"EG"`` -> ``["Cu K", "As K"]``, ``"CrY"`` -> ``["Cr K", "Pb L"]``, ``"Sm"`` (smalt) ->
    ``["Co K"]`` (not its variable K and As), ``"LW+RL"`` (a group) -> ``["Pb L"]``, the
    elements every member needs. A material or class without evidence (a user's entry that
    gives none) falls back to the elements of its formula heavier than potassium; a group
    whose members share no evidence falls back to the tracers they share.

    Parameters
    ----------
    pigment : str
        Class label or group abbreviation (``"VM"``, ``"LW+RL"``), a material's abbreviation
        (``"VG"``: its own evidence), or a class's or group's name (``"Vermilion"``).
    available : sequence of str, optional
        Map names that exist (e.g. the element layers); elements without an available map
        are left out. Default: any.
    library : PigmentLibrary, optional
        Default: the built-in library.

    Returns
    -------
    list of str
        Empty when the pigment is unknown, or none of its elements is available or seen by XRF
        (ultramarine).
    """
    # here, not at the top: the tests monkeypatch this name on its module
    from .pigments import load_pigment_library

    library = load_pigment_library() if library is None else library
    symbols = _tracers(library, pigment)
    if not symbols:
        return []
    available = None if available is None else set(available)
    out = []
    for symbol in sorted(symbols, key=lambda s: ATOMIC_NUMBER.get(s, 0)):
        for family in _families(ATOMIC_NUMBER.get(symbol, 0)):
            group = f"{symbol} {family}"
            if available is None or group in available:
                out.append(group)
                break
        if len(out) == MAX_ELEMENTS:
            break
    return out


def _find(library, pigment: str):
    """What a key names: ``("group", Group)``, ``("class", label)``, ``("material", Pigment)``
    or None.

    Exact abbreviations first (group, class, then any material), then names and labels,
    case-insensitive (a pigment's name or class label, a group's name or abbreviation).
    """
    key = str(pigment).strip()
    group = library.group(key)
    if group is not None:
        return "group", group
    if key in library.classes:
        return "class", key
    if key in library:
        return "material", library[key]
    lowered = key.lower()
    for material in library:
        if material.kind == "pigment" and material.label is not None and lowered in (
                material.name.lower(), material.label.lower()):
            return "class", material.label
    for group in library.groups:
        if lowered in (group.name.lower(), group.abbreviation.lower()):
            return "group", group
    return None


def _tracers(library, pigment) -> tuple[str, ...]:
    """Element symbols (K and heavier) that trace what ``pigment`` names; empty if unknown."""
    def heavy(symbols):
        return tuple(s for s in dict.fromkeys(symbols) if ATOMIC_NUMBER.get(s, 0) >= MIN_Z)

    found = _find(library, pigment)
    if found is None:
        return ()
    kind, what = found
    if kind == "group":
        common = heavy(library.evidence_of(what.abbreviation))
        if common:
            return common
        each = [_tracers(library, member) for member in what.members]
        return tuple(s for s in each[0] if all(s in other for other in each[1:]))
    if kind == "class":
        evidence = heavy(library.evidence_of(what))
        if evidence:
            return evidence
        # No evidence given (a user's entry): the elements of its materials' formulas.
        return heavy(el for m in library if m.label == what for el in m.elements)
    return heavy(what.evidence) or heavy(what.elements)


def default_pairing(abbreviations: Sequence[str] | None = None, library=None) -> dict[str, list[str]]:
    """``{label: element map names}`` for pigments (default: the library's classes, then its
    groups, as a model's output columns)."""
    from .pigments import load_pigment_library

    library = load_pigment_library() if library is None else library
    if abbreviations is None:
        abbreviations = library.labels
    return {abbr: default_elements(abbr, library=library) for abbr in abbreviations}


def clip_limit(values, percentile: float = CLIP_PERCENTILE) -> float:
    """Upper display limit of a map: its ``percentile`` over finite pixels (> 0).

    Falls back to the largest value, then 1, for maps that are mostly zero or empty.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    high = float(np.percentile(finite, percentile))
    if high <= 0:
        high = float(finite.max())
    return high if high > 0 else 1.0


def normalise(values, percentile: float = CLIP_PERCENTILE) -> np.ndarray:
    """``values / clip_limit(values)`` clipped to [0, 1], float32 (NaN stays NaN)."""
    values = np.asarray(values, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.clip(values / np.float32(clip_limit(values, percentile)), 0.0, 1.0)


def element_concentration(element_maps: Sequence, percentile: float = CLIP_PERCENTILE) -> np.ndarray:
    """Normalised element concentration per pixel; for several maps, their minimum.

    Each map is normalised by its own clip limit first, so that two elements of very
    different yields (Cu K and As K of emerald green) weigh alike (paper Fig. 5, last row).

    Returns
    -------
    ndarray of float32, shape of the maps, in [0, 1]
    """
    maps = [np.asarray(m) for m in element_maps]
    if not maps:
        raise ValueError("give at least one element map")
    shape = maps[0].shape
    for m in maps[1:]:
        if m.shape != shape:
            raise ValueError(f"element maps differ in shape: {shape} and {m.shape}")
    out = normalise(maps[0], percentile)
    for m in maps[1:]:
        out = np.fmin(out, normalise(m, percentile))
    return out


def scatter_data(pigment, element_maps: Sequence, percentile: float = CLIP_PERCENTILE):
    """Points of the scatter plot: element concentration (x) and pigment probability (y).

    Parameters
    ----------
    pigment : array, shape (rows, columns)
        Probability map (NaN where the pixel has no data).
    element_maps : sequence of arrays, shape (rows, columns)
        One or two element maps.

    Returns
    -------
    x, y : ndarray of float32, shape (rows * columns,)
        Row-major: point ``i`` is pixel ``pixel_of_point(i, columns)``.
    """
    pigment = np.asarray(pigment, dtype=np.float32)
    x = element_concentration(element_maps, percentile)
    if x.shape != pigment.shape:
        raise ValueError(f"the pigment map is {pigment.shape}, the element maps {x.shape}")
    return x.ravel(), pigment.ravel()


def point_of_pixel(row: int, col: int, columns: int) -> int:
    """Index of a pixel's point in :func:`scatter_data` (row-major)."""
    return int(row) * int(columns) + int(col)


def pixel_of_point(index: int, columns: int) -> tuple[int, int]:
    """(row, column) of the pixel of point ``index`` in :func:`scatter_data`."""
    row, col = divmod(int(index), int(columns))
    return row, col


def nearest_point(points, target, max_distance: float | None = None) -> int | None:
    """Index of the finite point nearest to ``target``, or None beyond ``max_distance``.

    Parameters
    ----------
    points : array, shape (n, 2)
        Coordinates (e.g. display pixels of the scatter points); NaN rows are skipped.
    target : (float, float)
    """
    points = np.asarray(points, dtype=np.float64)
    d2 = np.sum((points - np.asarray(target, dtype=np.float64)) ** 2, axis=1)
    d2[~np.isfinite(d2)] = np.inf
    if d2.size == 0 or not np.isfinite(d2).any():
        return None
    i = int(np.argmin(d2))
    if max_distance is not None and d2[i] > max_distance**2:
        return None
    return i


def overlay_rgb(pigment, element_maps: Sequence, percentile: float = CLIP_PERCENTILE) -> np.ndarray:
    """The pigment in red over one or two elements in green and blue, float32 (rows, cols, 3).

    Probabilities are shown as they are (0-1); element maps are clipped at ``percentile``.
    Yellow (or white) pixels are where pigment and element(s) agree.
    """
    pigment = np.asarray(pigment, dtype=np.float32)
    rgb = np.zeros((*pigment.shape, 3), dtype=np.float32)
    rgb[..., 0] = np.nan_to_num(np.clip(pigment, 0.0, 1.0))
    for channel, values in zip((1, 2), element_maps):
        rgb[..., channel] = np.nan_to_num(normalise(values, percentile))
    return rgb


def comparison_figure(
    pigment,
    element_maps: Sequence,
    *,
    pigment_name: str = "pigment",
    element_names: Sequence[str] = (),
    percentile: float = CLIP_PERCENTILE,
    highlight: tuple[int, int] | None = None,
    dpi: int = 100,
):
    """One row of the paper's Fig. 5: pigment map, element map(s), overlay and scatter plot.

    Parameters
    ----------
    pigment : array, shape (rows, columns)
        Probability map.
    element_maps : sequence of arrays
        One or two element maps of the same shape.
    pigment_name, element_names : str
        Titles.
    highlight : (row, column), optional
        A pixel to mark in the images and the scatter plot.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to any GUI; save it with ``fig.savefig(path)``.
    """
    return comparison_rows_figure(
        {"": pigment}, element_maps, pigment_name=pigment_name, element_names=element_names,
        percentile=percentile, highlight=highlight, dpi=dpi,
    )


def comparison_rows_figure(
    pigments: Mapping,
    element_maps: Sequence,
    *,
    pigment_name: str = "pigment",
    element_names: Sequence[str] = (),
    percentile: float = CLIP_PERCENTILE,
    highlight: tuple[int, int] | None = None,
    dpi: int = 100,
):
    """Rows of the paper's Fig. 5 for several maps of one pigment (e.g. before and after
    finetuning) against the same element maps.

    Parameters
    ----------
    pigments : mapping of str -> array, shape (rows, columns)
        Row title (e.g. "before finetuning"; "" for none) -> probability map.
    element_maps, pigment_name, element_names, percentile, highlight, dpi
        As in :func:`comparison_figure`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    element_maps = [np.asarray(m) for m in element_maps]
    names = list(element_names) + [f"element {i + 1}" for i in range(len(element_names), len(element_maps))]
    fig = Figure(figsize=(13, 3.2 * len(pigments)), dpi=dpi, layout="constrained")
    axes = fig.subplots(len(pigments), 4, squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1, 1.15]})
    for row_axes, (row_title, pigment) in zip(axes, pigments.items()):
        _draw_comparison(row_axes, pigment, element_maps, pigment_name, names, percentile, highlight)
        if row_title:
            row_axes[0].set_ylabel(row_title, fontsize=10)
    return fig


def _draw_comparison(axes, pigment, element_maps, pigment_name, names, percentile, highlight):
    """Fill four axes: pigment map, element map(s), overlay, scatter plot."""
    x, y = scatter_data(pigment, element_maps, percentile)
    rgb = overlay_rgb(pigment, element_maps, percentile)
    pig_rgb = np.zeros_like(rgb)
    pig_rgb[..., 0] = rgb[..., 0]
    el_rgb = rgb.copy()
    el_rgb[..., 0] = 0
    element_title = " + ".join(f"{n} ({c})" for n, c in zip(names, ("green", "blue")))
    for ax, image, title in (
        (axes[0], pig_rgb, f"P({pigment_name})"),
        (axes[1], el_rgb, element_title),
        (axes[2], rgb, "overlay"),
    ):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if highlight is not None:
            ax.plot(highlight[1], highlight[0], marker="s", mfc="none", mec="cyan", ms=8, mew=1.2)
    # What the colours mean: probability 0-1 in red; each element from 0 to its clip limit.
    _colour_bar(axes[0], "red", 1.0, "probability")
    for (name, values), colour in zip(zip(names, element_maps), ("green", "blue")):
        _colour_bar(axes[1], colour, clip_limit(values, percentile), name)
    ax = axes[3]
    ax.plot(x, y, linestyle="none", marker=".", markersize=2, alpha=0.4, color="#c0392b", rasterized=True)
    if highlight is not None:
        i = point_of_pixel(*highlight, rgb.shape[1])
        ax.plot(x[i], y[i], marker="o", mfc="none", mec="black", ms=9, mew=1.5)
    label = " / ".join(names)
    ax.set_xlabel(
        ("min of " if len(element_maps) > 1 else "") + f"{label} (÷ {percentile:g}th percentile)",
        fontsize=8,
    )
    ax.set_ylabel(f"P({pigment_name})", fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=7)


def _colour_bar(ax, colour: str, top: float, label: str) -> None:
    """A black-to-``colour`` bar beside ``ax`` from 0 to ``top`` (values above show as ``top``)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    cmap = LinearSegmentedColormap.from_list(f"black-{colour}", ["black", colour])
    bar = ax.figure.colorbar(ScalarMappable(Normalize(0.0, float(top)), cmap), ax=ax,
                             fraction=0.046, pad=0.02)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
