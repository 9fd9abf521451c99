"""The pigment library: pigments, the ground, binders and distractors, from JSON or TOML files.

A library file holds a list of materials (see ``library.json`` beside this module)::

    {"format": "napari-xrf-pigments pigment library", "version": 1,
     "materials": [
        {"abbreviation": "VM", "name": "Vermilion", "formula": "Hg1S1", "density": 8.1,
         "kind": "pigment", "class": "VM"}, ...]}

or in TOML, one ``[[materials]]`` table per entry. ``kind`` is ``"pigment"`` (default),
``"ground"``, ``"binder"`` or ``"distractor"``; ``class`` is the label the pigment counts as
(default: its own abbreviation for pigments, none for the other kinds), so that substitutes such
as verdigris count as emerald green. ``substitute`` (optional) maps abbreviations to mass
fractions of a mixture used in place of the pigment in mock-ups.

Optional keys of every entry: ``evidence``, the element symbols XRF must see for the material to
be called (each in its formula or a substitute's formula), ``typical``, composition ranges of real
samples, ``source``, a short citation, and ``note``. A ``"distractor"`` is an out-of-library paint
that is never a class (for open-set
training and testing); it needs ``split``: ``"train"`` or ``"test"``.

An optional ``"mixtures"`` list names pigment mixtures (the built-in file holds Table 2 of the
paper)::

    {"name": "Top 2", "position": "top", "pigments": {"VM": 30, "CM": 30, "CB": 40}}

Fractions are mass % (summing to 100) or mass fractions (summing to 1).

An optional ``"groups"`` list names classes that XRF alone cannot tell apart (same elements, no
usable matrix effect); a model trained on the library has one output per group besides its
members' outputs::

    {"abbreviation": "LW+RL", "name": "Lead white / red lead", "members": ["LW", "RL"],
     "why": "both are lead only"}

A user file (``extra``) adds materials, mixtures and groups; it may not redefine a built-in
entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._tables import load_table
from ..errors import InvalidDataError
from ._elements import ATOMIC_WEIGHT, mass_fractions, parse_formula
from .stratigraphy import DEFAULT_BINDER, Layer

FORMAT = "napari-xrf-pigments pigment library"
BUILTIN_PATH = Path(__file__).with_name("library.json")
KINDS = ("pigment", "ground", "binder", "distractor")
SPLITS = ("train", "test")
_KEYS = {"abbreviation", "name", "formula", "density", "kind", "class", "note", "substitute",
         "evidence", "source", "split", "typical"}
_MIXTURE_KEYS = {"name", "position", "pigments", "note"}
_GROUP_KEYS = {"abbreviation", "name", "members", "why"}
#: Fractions must sum to 1 or to 100 (mass %) within this relative tolerance.
_SUM_TOLERANCE = 0.01


class PigmentLibraryError(InvalidDataError):
    """A pigment library file or entry is invalid.

    ``group`` is the abbreviation of the group at fault, if any (so that the loader can name
    its file).
    """

    def __init__(self, message: str, *, group: str | None = None):
        super().__init__(message)
        self.group = group


@dataclass(frozen=True)
class Pigment:
    """One material of the library (a pigment, the ground, a binder or a distractor).

    Attributes
    ----------
    abbreviation : str
        Key used everywhere (e.g. ``"VM"``; the paper's abbreviations for Table 1 pigments).
    name : str
    formula : str
        PyMca-style formula with explicit counts, e.g. ``"Hg1S1"``.
    density : float
        g/cm3, > 0.
    kind : {"pigment", "ground", "binder", "distractor"}
    label : str or None
        Class this material counts as for labels (``"EG"`` for verdigris); None for grounds,
        binders and distractors.
    note : str
    substitute : tuple of (str, float) or None
        Mixture (abbreviation, mass fraction) that replaced this pigment in the mock-ups.
    evidence : tuple of str
        Elements XRF must see for this material to be called (``("Cu", "As")`` for emerald
        green); empty where XRF sees none (binders, ultramarine, an organic lake).
    source : str
        Short citation of the composition and density.
    split : {"train", "test"} or None
        For distractors: whether training sets may draw it or it is kept for testing.
    typical : str
        Composition ranges of real samples (the formula is one representative).
    """

    abbreviation: str
    name: str
    formula: str
    density: float
    kind: str = "pigment"
    label: str | None = None
    note: str = ""
    substitute: tuple[tuple[str, float], ...] | None = None
    evidence: tuple[str, ...] = ()
    source: str = ""
    split: str | None = None
    typical: str = ""

    @property
    def elements(self) -> tuple[str, ...]:
        """Element symbols of the formula, in order of appearance."""
        return tuple(parse_formula(self.formula))

    @property
    def composition(self) -> dict[str, int]:
        """Atoms per formula unit, e.g. ``{"Hg": 1, "S": 1}``."""
        return parse_formula(self.formula)

    @property
    def mass_fractions(self) -> dict[str, float]:
        """Element mass fractions (standard atomic weights; PyMca uses its own tables)."""
        return mass_fractions(self.formula)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "abbreviation": self.abbreviation,
            "name": self.name,
            "formula": self.formula,
            "density": self.density,
            "kind": self.kind,
        }
        if self.kind != "distractor":  # a distractor never has a class, not even null
            out["class"] = self.label
        if self.note:
            out["note"] = self.note
        if self.substitute:
            out["substitute"] = dict(self.substitute)
        if self.evidence:
            out["evidence"] = list(self.evidence)
        if self.typical:
            out["typical"] = self.typical
        if self.source:
            out["source"] = self.source
        if self.split is not None:
            out["split"] = self.split
        return out


@dataclass(frozen=True)
class Mixture:
    """A named pigment mixture (e.g. "Top 2" of the paper's Table 2).

    Attributes
    ----------
    name : str
    pigments : tuple of (str, float)
        Abbreviation and mass fraction, normalised to sum 1.
    position : str or None
        Where the mock-ups used it (``"top"``, ``"bottom"``), if known.
    note : str
    """

    name: str
    pigments: tuple[tuple[str, float], ...]
    position: str | None = None
    note: str = ""

    def layer(self, thickness_um: float, *, binder: str = DEFAULT_BINDER,
              binder_fraction: float = 0.0, density: float | None = None) -> Layer:
        """A :class:`Layer` of this mixture."""
        return Layer(dict(self.pigments), thickness_um, binder=binder,
                     binder_fraction=binder_fraction, density=density)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "position": self.position,
                               "pigments": dict(self.pigments)}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Group:
    """Classes that XRF alone cannot tell apart, mapped together as well as one by one.

    Attributes
    ----------
    abbreviation : str
        Label of the group's output, e.g. ``"LW+RL"``.
    name : str
        Readable name, e.g. ``"Lead white / red lead"``.
    members : tuple of str
        Member classes, in library order.
    why : str
        The physics that makes them look alike.
    """

    abbreviation: str
    name: str
    members: tuple[str, ...]
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"abbreviation": self.abbreviation, "name": self.name,
                               "members": list(self.members)}
        if self.why:
            out["why"] = self.why
        return out


@dataclass(frozen=True)
class PigmentLibrary:
    """An ordered, read-only collection of :class:`Pigment` keyed by abbreviation.

    Attributes
    ----------
    materials : tuple of Pigment
    sources : tuple of str
        Files (or ``"<dict>"``) the entries came from, for provenance.
    mixtures : tuple of Mixture
        Named mixtures (Table 2 of the paper for the built-in library).
    groups : tuple of Group
        Classes mapped together because XRF cannot tell them apart.
    """

    materials: tuple[Pigment, ...]
    sources: tuple[str, ...] = ()
    mixtures: tuple[Mixture, ...] = ()
    groups: tuple[Group, ...] = ()
    _index: dict = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {m.abbreviation: m for m in self.materials})
        for m in self.materials:
            for abbr, _ in m.substitute or ():
                if abbr not in self._index:
                    raise PigmentLibraryError(
                        f"pigment {m.abbreviation!r}: substitute {abbr!r} is not in the library"
                    )
        for mix in self.mixtures:
            for abbr, _ in mix.pigments:
                if abbr not in self._index:
                    raise PigmentLibraryError(
                        f"mixture {mix.name!r}: pigment {abbr!r} is not in the library")
        classes = self.classes
        for group in self.groups:
            if group.abbreviation in self._index or group.abbreviation in classes:
                raise PigmentLibraryError(
                    f"group {group.abbreviation!r}: the abbreviation is already a material or "
                    "class", group=group.abbreviation)
            unknown = [m for m in group.members if m not in classes]
            if unknown:
                raise PigmentLibraryError(
                    f"group {group.abbreviation!r}: members {unknown} are not classes of the "
                    f"library (classes: {', '.join(classes)})", group=group.abbreviation)

    def mixture(self, name: str) -> Mixture:
        """A named mixture, e.g. ``lib.mixture("Bottom 4A")``."""
        for mix in self.mixtures:
            if mix.name == name:
                return mix
        known = ", ".join(m.name for m in self.mixtures)
        raise KeyError(f"no mixture {name!r} in the library (known: {known})")

    def __getitem__(self, abbreviation: str) -> Pigment:
        try:
            return self._index[abbreviation]
        except KeyError:
            known = ", ".join(self._index)
            raise KeyError(f"no pigment {abbreviation!r} in the library (known: {known})") from None

    def __contains__(self, abbreviation) -> bool:
        return abbreviation in self._index

    def __iter__(self) -> Iterator[Pigment]:
        return iter(self.materials)

    def __len__(self) -> int:
        return len(self.materials)

    @property
    def abbreviations(self) -> tuple[str, ...]:
        return tuple(self._index)

    def of_kind(self, kind: str) -> tuple[Pigment, ...]:
        """Materials of one kind (``"pigment"``, ``"ground"``, ``"binder"`` or ``"distractor"``)."""
        return tuple(m for m in self.materials if m.kind == kind)

    def distractors(self, split: str | None = None) -> tuple[Pigment, ...]:
        """Out-of-library paints (never a class), in library order.

        Parameters
        ----------
        split : {"train", "test"}, optional
            Only those that training sets may draw (``"train"``) or that are kept for testing
            (``"test"``); default all.

        Returns
        -------
        tuple of Pigment
        """
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        return tuple(m for m in self.materials
                     if m.kind == "distractor" and (split is None or m.split == split))

    @property
    def labels(self) -> tuple[str, ...]:
        """Label columns of training sets and models: the classes, then the groups."""
        return self.classes + tuple(g.abbreviation for g in self.groups)

    def group(self, abbreviation: str) -> Group | None:
        """The group of that abbreviation, or None."""
        return next((g for g in self.groups if g.abbreviation == abbreviation), None)

    def members_of(self, label: str) -> tuple[str, ...]:
        """Classes a label stands for: the group's members, or the class itself."""
        group = self.group(label)
        if group is not None:
            return group.members
        if label not in self.classes:
            raise KeyError(f"no class or group {label!r} in the library "
                           f"(labels: {', '.join(self.labels)})")
        return (label,)

    def name_of(self, label: str) -> str:
        """Readable name of a class (its material's name) or group."""
        group = self.group(label)
        if group is not None:
            return group.name
        if label in self._index:
            return self._index[label].name
        return label

    def evidence_of(self, cls: str) -> tuple[str, ...]:
        """Elements XRF must see for a class or group to be called.

        For a class, the union, in library order, of the evidence of the materials that count
        as ``cls``: ``("Cu", "As")`` for emerald green (its entry; verdigris adds Cu, sodium
        arsenite As). For a group, the elements every member needs (``("Pb",)`` for lead
        white / red lead).

        Raises
        ------
        KeyError
            If ``cls`` is not a class or group of the library.
        """
        group = self.group(cls)
        if group is not None:
            each = [self.evidence_of(m) for m in group.members]
            return tuple(el for el in each[0] if all(el in e for e in each[1:]))
        if cls not in self.classes:
            raise KeyError(f"no class {cls!r} in the library (classes: {', '.join(self.classes)})")
        found: dict[str, None] = {}
        for m in self.materials:
            if m.label == cls:
                for el in m.evidence:
                    found.setdefault(el, None)
        return tuple(found)

    def without_distractors(self, keep=()) -> PigmentLibrary:
        """The library less its distractors (except those in ``keep``).

        A simulator built on it has exactly the components, in the same order, of the library
        before distractors existed, so seeded simulations of class pigments do not change.
        Mixtures that use a dropped distractor are dropped too.

        Parameters
        ----------
        keep : iterable of str
            Distractor abbreviations to keep.
        """
        keep = set(keep)
        materials = tuple(m for m in self.materials
                          if m.kind != "distractor" or m.abbreviation in keep)
        if len(materials) == len(self.materials):
            return self
        names = {m.abbreviation for m in materials}
        mixtures = tuple(mix for mix in self.mixtures
                         if all(abbr in names for abbr, _ in mix.pigments))
        return PigmentLibrary(materials, self.sources, mixtures, self.groups)

    @property
    def classes(self) -> tuple[str, ...]:
        """Label classes in library order, each once (Table 1 first for the built-in)."""
        seen: dict[str, None] = {}
        for m in self.materials:
            if m.label is not None:
                seen.setdefault(m.label, None)
        return tuple(seen)

    def class_of(self, abbreviation: str) -> str | None:
        """Label class of a material (``"EG"`` for ``"VG"``), None for grounds and binders."""
        return self[abbreviation].label

    @property
    def elements(self) -> tuple[str, ...]:
        """All elements of all materials, by atomic number."""
        found = {el for m in self.materials for el in m.elements}
        order = list(ATOMIC_WEIGHT)
        return tuple(sorted(found, key=order.index))

    def expand_substitutes(self, fractions: Mapping[str, float]) -> dict[str, float]:
        """Replace pigments that have a mock-up substitute by that mixture.

        Parameters
        ----------
        fractions : mapping of str to float
            Abbreviation to mass fraction.

        Returns
        -------
        dict
            Same total, e.g. ``{"EG": 1}`` becomes ``{"VG": 0.392, "SA": 0.608}``.
        """
        out: dict[str, float] = {}
        for abbr, frac in fractions.items():
            sub = self[abbr].substitute
            if sub:
                for s_abbr, s_frac in sub:
                    out[s_abbr] = out.get(s_abbr, 0.0) + float(frac) * s_frac
            else:
                out[abbr] = out.get(abbr, 0.0) + float(frac)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "materials": [m.to_dict() for m in self.materials],
            "mixtures": [m.to_dict() for m in self.mixtures],
            "groups": [g.to_dict() for g in self.groups],
        }

    def save(self, path) -> None:
        """Write the library as JSON (the same form :func:`load_pigment_library` reads)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _evidence_problem(material: Pigment, index: Mapping[str, Pigment]) -> str | None:
    """What is wrong with a material's evidence elements, or None.

    Each must occur in its formula or in the formula of one of its substitutes (emerald
    green's As is in sodium arsenite too); substitutes missing from ``index`` are skipped
    (reported elsewhere).
    """
    found = set(material.composition)
    for abbr, _ in material.substitute or ():
        if abbr in index:
            found |= set(index[abbr].composition)
    for el in material.evidence:
        if el not in found:
            where = "nor in its substitutes' formulas" if material.substitute else ""
            return (f"evidence element {el!r} is not in the formula {material.formula!r}"
                    + (f" {where}" if where else ""))
    return None


def _read_file(path: Path) -> dict:
    try:
        return load_table(path)
    except OSError as exc:
        raise PigmentLibraryError(f"cannot read pigment library {path}: {exc}") from None
    except ValueError as exc:
        raise PigmentLibraryError(f"pigment library {path} is not valid: {exc}") from None


def _entries(source, where: str) -> list:
    data = source
    if not isinstance(data, Mapping):
        raise PigmentLibraryError(f"{where}: expected a table with a 'materials' list")
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise PigmentLibraryError(f"{where}: format is {fmt!r}, expected {FORMAT!r}")
    entries = data.get("materials")
    if not isinstance(entries, list):
        raise PigmentLibraryError(f"{where}: no 'materials' list")
    return entries


def _checked_table(entry, where: str, what: str, index: int, name_key: str, keys) -> str:
    """The label of an entry for messages (``"lib.json: entry 3 ('VM')"``), once it is known to
    be a table without unknown keys."""
    name = entry.get(name_key) if isinstance(entry, Mapping) else None
    label = f"{where}: {what} {index}" + (f" ({name!r})" if name else "")
    if not isinstance(entry, Mapping):
        raise PigmentLibraryError(f"{label}: expected a table, got {type(entry).__name__}")
    unknown = set(entry) - keys
    if unknown:
        raise PigmentLibraryError(f"{label}: unknown keys {sorted(unknown)}")
    return label


def _check_abbreviation(abbr, label: str) -> None:
    if not isinstance(abbr, str) or not abbr or "/" in abbr or abbr.strip() != abbr:
        raise PigmentLibraryError(f"{label}: abbreviation must be a non-empty string without '/'")


def _pigment(entry, where: str, index: int) -> Pigment:
    label = _checked_table(entry, where, "entry", index, "abbreviation", _KEYS)
    for key in ("abbreviation", "formula", "density"):
        if key not in entry:
            raise PigmentLibraryError(f"{label}: missing {key!r}")
    abbr = entry["abbreviation"]
    _check_abbreviation(abbr, label)
    try:
        parse_formula(entry["formula"])
    except ValueError as exc:
        raise PigmentLibraryError(f"{label}: {exc}") from None
    try:
        density = float(entry["density"])
    except (TypeError, ValueError):
        raise PigmentLibraryError(
            f"{label}: density {entry['density']!r} is not a number") from None
    if not density > 0 or density == float("inf"):
        raise PigmentLibraryError(f"{label}: density must be > 0 g/cm3, got {entry['density']!r}")
    kind = entry.get("kind", "pigment")
    if kind not in KINDS:
        raise PigmentLibraryError(f"{label}: kind must be one of {KINDS}, got {kind!r}")
    if kind == "distractor" and "class" in entry:
        raise PigmentLibraryError(
            f"{label}: a distractor is never a class; remove its 'class' key")
    cls = entry.get("class", abbr if kind == "pigment" else None)
    if cls is not None and (not isinstance(cls, str) or not cls or "/" in cls):
        raise PigmentLibraryError(f"{label}: class must be a string without '/' or null")
    split = entry.get("split")
    if kind == "distractor":
        if split not in SPLITS:
            raise PigmentLibraryError(
                f"{label}: a distractor needs 'split', one of {SPLITS}; got {split!r}")
    elif split is not None:
        raise PigmentLibraryError(f"{label}: 'split' is only for distractors (kind {kind!r})")
    evidence = entry.get("evidence", [])
    if not isinstance(evidence, (list, tuple)) or not all(isinstance(e, str) for e in evidence):
        raise PigmentLibraryError(
            f"{label}: evidence must be a list of element symbols, got {evidence!r}")
    for el in evidence:
        if el not in ATOMIC_WEIGHT:
            raise PigmentLibraryError(f"{label}: evidence {el!r} is not an element symbol")
    source = entry.get("source", "")
    if not isinstance(source, str):
        raise PigmentLibraryError(f"{label}: source must be a string")
    typical = entry.get("typical", "")
    if not isinstance(typical, str):
        raise PigmentLibraryError(f"{label}: typical must be a string")
    substitute = entry.get("substitute")
    if substitute is not None:
        if not isinstance(substitute, Mapping) or not substitute:
            raise PigmentLibraryError(f"{label}: substitute must map abbreviations to fractions")
        fracs = {}
        for k, v in substitute.items():
            try:
                fracs[str(k)] = float(v)
            except (TypeError, ValueError):
                raise PigmentLibraryError(
                    f"{label}: substitute fraction {v!r} is not a number") from None
        _check_fractions(fracs, f"{label}: substitute")
        total = sum(fracs.values())
        substitute = tuple((k, v / total) for k, v in fracs.items())
    return Pigment(
        abbreviation=abbr,
        name=str(entry.get("name", abbr)),
        formula=entry["formula"],
        density=density,
        kind=kind,
        label=cls,
        note=str(entry.get("note", "")),
        substitute=substitute,
        evidence=tuple(dict.fromkeys(evidence)),
        source=source,
        split=split,
        typical=typical,
    )


def _check_fractions(fractions: Mapping[str, float], label: str) -> None:
    """Fractions must be >= 0 and sum to 1 (mass fractions) or 100 (mass %)."""
    if any(not f >= 0 for f in fractions.values()):
        raise PigmentLibraryError(f"{label}: fractions must be >= 0, got {dict(fractions)}")
    total = sum(fractions.values())
    if not any(abs(total - whole) <= _SUM_TOLERANCE * whole for whole in (1.0, 100.0)):
        raise PigmentLibraryError(
            f"{label}: fractions sum to {total:g}; give mass fractions summing to 1 or mass % "
            "summing to 100")


def _mixture(entry, where: str, index: int) -> Mixture:
    label = _checked_table(entry, where, "mixture", index, "name", _MIXTURE_KEYS)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise PigmentLibraryError(f"{label}: missing 'name'")
    pigments = entry.get("pigments")
    if not isinstance(pigments, Mapping) or not pigments:
        raise PigmentLibraryError(f"{label}: 'pigments' must map abbreviations to fractions")
    try:
        fracs = {str(k): float(v) for k, v in pigments.items()}
    except (TypeError, ValueError):
        raise PigmentLibraryError(f"{label}: pigment fractions must be numbers") from None
    _check_fractions(fracs, label)
    total = sum(fracs.values())
    position = entry.get("position")
    if position is not None and not isinstance(position, str):
        raise PigmentLibraryError(f"{label}: position must be a string")
    if abs(total - 1.0) > 1e-12:  # leave already-normalised fractions bit-exact
        fracs = {k: v / total for k, v in fracs.items()}
    return Mixture(name, tuple(fracs.items()), position,
                   str(entry.get("note", "")))


def _group(entry, where: str, index: int) -> Group:
    label = _checked_table(entry, where, "group", index, "abbreviation", _GROUP_KEYS)
    abbr = entry.get("abbreviation")
    _check_abbreviation(abbr, label)
    members = entry.get("members")
    if (not isinstance(members, list) or len(set(members)) < 2
            or not all(isinstance(m, str) for m in members)):
        raise PigmentLibraryError(f"{label}: members must list two or more class abbreviations")
    return Group(abbr, str(entry.get("name", abbr)), tuple(dict.fromkeys(members)),
                 str(entry.get("why", "")))


def _load_source(source) -> tuple[list[Pigment], list[Mixture], list[Group], str, dict[str, str]]:
    if isinstance(source, Mapping):
        where = "<dict>"
        data = source
    else:
        path = Path(source)
        where = str(path)
        data = _read_file(path)
    entries = _entries(data, where)
    pigments = [_pigment(e, where, i) for i, e in enumerate(entries)]
    seen: set[str] = set()
    for p in pigments:
        if p.abbreviation in seen:
            raise PigmentLibraryError(f"{where}: abbreviation {p.abbreviation!r} appears twice")
        seen.add(p.abbreviation)
    raw = data.get("mixtures", [])
    if not isinstance(raw, list):
        raise PigmentLibraryError(f"{where}: 'mixtures' must be a list")
    mixtures = [_mixture(e, where, i) for i, e in enumerate(raw)]
    raw = data.get("groups", [])
    if not isinstance(raw, list):
        raise PigmentLibraryError(f"{where}: 'groups' must be a list")
    groups = [_group(e, where, i) for i, e in enumerate(raw)]
    labels = {p.abbreviation: f"{where}: entry {i} ({p.abbreviation!r})"
              for i, p in enumerate(pigments)}
    return pigments, mixtures, groups, where, labels


def load_pigment_library(path=None, extra=None) -> PigmentLibrary:
    """Load the pigment library, optionally extended with user pigments.

    Parameters
    ----------
    path : str or Path, optional
        Library file (JSON, or TOML by extension) replacing the built-in one.
    extra : str, Path, mapping, or sequence of those, optional
        More files (or already-parsed tables) of the same form. Their materials, mixtures and
        groups are appended; one that redefines an existing entry is an error.

    Returns
    -------
    PigmentLibrary

    Raises
    ------
    PigmentLibraryError
        For an unreadable file or an invalid entry (unknown element, bad formula,
        density <= 0, unknown key, fractions that do not sum to 1 or 100, an evidence element
        not in the formula, a distractor with a class or without a split, a redefined entry,
        ...), naming the file and the entry.

    Examples
    --------
    >>> lib = load_pigment_library()
    >>> lib["VM"].formula
    'Hg1S1'
    >>> lib.classes[:11]
    ('CrG', 'CrY', 'CB', 'EG', 'IO', 'LW', 'PB', 'RL', 'CM', 'VM', 'ZW')
    """
    base, base_mixtures, base_groups, where, labels = _load_source(
        BUILTIN_PATH if path is None else path)
    sources = [where]
    merged = {p.abbreviation: p for p in base}
    mixtures = {m.name: m for m in base_mixtures}
    groups = {g.abbreviation: g for g in base_groups}
    group_where = dict.fromkeys(groups, where)
    if extra is not None:
        if isinstance(extra, (str, Path, Mapping)):
            extra = [extra]
        if not isinstance(extra, Sequence):
            raise TypeError("extra must be a path, a mapping or a sequence of those")
        for source in extra:
            more, more_mixtures, more_groups, where, more_labels = _load_source(source)
            sources.append(where)
            for p in more:
                if p.abbreviation in merged:
                    raise PigmentLibraryError(
                        f"{more_labels[p.abbreviation]}: {p.abbreviation!r} is already defined "
                        f"by {labels[p.abbreviation]}; give your material another abbreviation")
                merged[p.abbreviation] = p
            labels.update(more_labels)
            for m in more_mixtures:
                if m.name in mixtures:
                    raise PigmentLibraryError(
                        f"{where}: mixture {m.name!r} is already defined; give it another name")
                mixtures[m.name] = m
            for g in more_groups:
                if g.abbreviation in groups:
                    raise PigmentLibraryError(
                        f"{where}: group {g.abbreviation!r} is already defined; give it another "
                        "abbreviation")
                groups[g.abbreviation] = g
                group_where[g.abbreviation] = where
    # Evidence may sit in a substitute (defined later or in another file): check once merged,
    # naming the entry's file.
    for p in merged.values():
        problem = _evidence_problem(p, merged)
        if problem:
            raise PigmentLibraryError(f"{labels[p.abbreviation]}: {problem}")
    try:
        return PigmentLibrary(tuple(merged.values()), tuple(sources), tuple(mixtures.values()),
                              tuple(groups.values()))
    except PigmentLibraryError as exc:
        if exc.group is None:
            raise
        raise PigmentLibraryError(f"{group_where[exc.group]}: {exc}") from None
