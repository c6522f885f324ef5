"""What counts as a count and as a number at the public boundaries: one definition, each caller its own message.

Callers raise with a message naming their own function, key and value; these predicates only decide.
"""

import math
import numbers


def is_int(value, least: int | None = 0) -> bool:
    """An integer ``>= least`` (numpy integers included; ``least=None``: any integer). A bool is not: ``True`` is an
    int to Python, never a count or an index to a user."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and (least is None or value >= least)


def is_finite_number(value) -> bool:
    """A finite real number (numpy scalars included); a bool is not."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
