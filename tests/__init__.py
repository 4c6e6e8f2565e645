"""The test suite. Imported before tests/conftest.py and every test module, so before numpy.

One BLAS/OpenMP thread per test process: the suite already runs one xdist worker per core,
and scikit-learn's, XGBoost's and OpenBLAS's own pools on top of that oversubscribed the cores
(OpenMP threads spin while they wait): `make check` used a fifth more CPU and took 55 s
instead of 43 s. The servers, stages and tools the tests start inherit it (the service's
app/gunicorn_conf.py sets the same); a value already in the environment wins.
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
