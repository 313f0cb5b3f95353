"""What ``prefetch_generator_jax`` builds on: the only internal names it may import.

The two packages ship together, so the sibling may use more than the public
API; this module says exactly what, and nothing else of the core is crossed.
Changing one of these names is a change to both packages.

* ``iterate`` and ``check_iterable``: the argument checks every stage shares,
  each naming the bad argument before anything starts;
* ``find_state_methods``: a source's checkpoint methods, looked up through
  stacked stages to the innermost source;
* ``close_at_exit``: close an iterator that runs threads of its own (a Grain
  iterator) at interpreter exit, with the workers.
"""

from ._checkpoint import find_state_methods
from ._checks import check_iterable, iterate
from ._worker import close_at_exit

__all__ = ["check_iterable", "close_at_exit", "find_state_methods", "iterate"]
