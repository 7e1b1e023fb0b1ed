"""prismrec: split every user into several interests and recommend for each of them."""
from prismrec._versions import guard as _guard

# Fail at once, with the fix, on a stack that breaks Horovod (Keras 3) or Petastorm (pyarrow >= 15).
_guard()

__version__ = "0.1.0"
