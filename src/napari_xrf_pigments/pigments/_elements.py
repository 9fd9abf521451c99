"""Element symbols, standard atomic weights and a strict PyMca-style formula parser.

Kept here (not taken from PyMca) so that loading and validating a pigment library stays a
light import. The physics uses PyMca's own atomic data; these weights are only for checks and
display (e.g. the Cu/As ratio of the emerald-green substitute).
"""

from __future__ import annotations

import re

# Standard atomic weights (IUPAC, abridged), Z = 1..92.
_TABLE = """
H 1.008 He 4.0026 Li 6.94 Be 9.0122 B 10.81 C 12.011 N 14.007 O 15.999 F 18.998 Ne 20.180
Na 22.990 Mg 24.305 Al 26.982 Si 28.085 P 30.974 S 32.06 Cl 35.45 Ar 39.948 K 39.098 Ca 40.078
Sc 44.956 Ti 47.867 V 50.942 Cr 51.996 Mn 54.938 Fe 55.845 Co 58.933 Ni 58.693 Cu 63.546
Zn 65.38 Ga 69.723 Ge 72.630 As 74.922 Se 78.971 Br 79.904 Kr 83.798 Rb 85.468 Sr 87.62
Y 88.906 Zr 91.224 Nb 92.906 Mo 95.95 Tc 98.0 Ru 101.07 Rh 102.91 Pd 106.42 Ag 107.87
Cd 112.41 In 114.82 Sn 118.71 Sb 121.76 Te 127.60 I 126.90 Xe 131.29 Cs 132.91 Ba 137.33
La 138.91 Ce 140.12 Pr 140.91 Nd 144.24 Pm 145.0 Sm 150.36 Eu 151.96 Gd 157.25 Tb 158.93
Dy 162.50 Ho 164.93 Er 167.26 Tm 168.93 Yb 173.05 Lu 174.97 Hf 178.49 Ta 180.95 W 183.84
Re 186.21 Os 190.23 Ir 192.22 Pt 195.08 Au 196.97 Hg 200.59 Tl 204.38 Pb 207.2 Bi 208.98
Po 209.0 At 210.0 Rn 222.0 Fr 223.0 Ra 226.0 Ac 227.0 Th 232.04 Pa 231.04 U 238.03
"""

_tokens = _TABLE.split()
ATOMIC_WEIGHT: dict[str, float] = {
    _tokens[i]: float(_tokens[i + 1]) for i in range(0, len(_tokens), 2)
}
ATOMIC_NUMBER: dict[str, int] = {sym: z for z, sym in enumerate(ATOMIC_WEIGHT, start=1)}

_PART = re.compile(r"([A-Z][a-z]?)(\d+)")


def parse_formula(formula: str) -> dict[str, int]:
    """Element counts of a PyMca-style formula with explicit counts.

    Parameters
    ----------
    formula : str
        E.g. ``"Pb3C2O8H2"``. Every element symbol must be followed by an integer count
        (PyMca splits formulas on digits, so ``"CoAl2O4"`` would be read as element "CoAl").

    Returns
    -------
    dict of str to int
        Element symbol to number of atoms, in order of first appearance.

    Raises
    ------
    ValueError
        With a message saying what is wrong.
    """
    if not isinstance(formula, str) or not formula:
        raise ValueError("formula must be a non-empty string")
    pos = 0
    counts: dict[str, int] = {}
    for match in _PART.finditer(formula):
        if match.start() != pos:
            break
        symbol, number = match.group(1), int(match.group(2))
        if symbol not in ATOMIC_WEIGHT:
            raise ValueError(f"unknown element {symbol!r} in formula {formula!r}")
        if number < 1:
            raise ValueError(f"count of {symbol} must be at least 1 in formula {formula!r}")
        counts[symbol] = counts.get(symbol, 0) + number
        pos = match.end()
    if pos != len(formula):
        rest = formula[pos:]
        head = re.match(r"[A-Z][a-z]*", rest)
        if head and head.group(0) not in ATOMIC_WEIGHT:
            hint = f"{head.group(0)!r} is not an element symbol"
        else:
            hint = f"cannot read {rest!r}"
        raise ValueError(
            f"bad formula {formula!r}: {hint}; write an explicit integer count after every "
            "element, e.g. 'Co1Al2O4', 'Hg1S1'"
        )
    return counts


def mass_fractions(formula: str) -> dict[str, float]:
    """Element mass fractions of a formula (sum 1)."""
    counts = parse_formula(formula)
    masses = {el: n * ATOMIC_WEIGHT[el] for el, n in counts.items()}
    total = sum(masses.values())
    return {el: m / total for el, m in masses.items()}
