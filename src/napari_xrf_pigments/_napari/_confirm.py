"""Asking before a widget replaces an existing file (the CLI's ``--force``)."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QMessageBox


def confirm_replace(parent, path, title: str) -> bool:
    """True if ``path`` does not exist, or the user agrees to replace it.

    Parameters
    ----------
    parent : QWidget
        The dialog's parent.
    path : str or Path
    title : str
        The widget's name, the dialog's title.
    """
    path = Path(path)
    if not path.exists():
        return True
    answer = QMessageBox.question(
        parent, title, f"{path} exists. Replace it?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes
