"""Pure statistical building blocks of the gates engine (numpy/scipy only, no tables, no spec).

Every function here takes counts and levels and returns bounds, p-values or plans; decisions are
made by :mod:`gates.kinds`, which also applies the fail-side multiplicity correction.
"""
