"""Matplotlib plots inside napari's docks, in the viewer's colours."""

from __future__ import annotations


def theme_axes(figure, ax, viewer) -> str:
    """Colour ``figure`` and ``ax`` (background, spines, ticks, labels) like the viewer's theme.

    Returns
    -------
    str
        The theme's text colour (hex), for what the caller draws in the foreground.
    """
    try:
        # lazy: napari is heavy
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        background, foreground = theme.canvas.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - a missing theme only costs the colours
        background, foreground = "#262930", "#f0f1f2"
    figure.set_facecolor(background)
    ax.set_facecolor(background)
    for spine in ax.spines.values():
        spine.set_color(foreground)
    ax.tick_params(colors=foreground, labelsize=8)
    ax.xaxis.label.set_color(foreground)
    ax.yaxis.label.set_color(foreground)
    return foreground
