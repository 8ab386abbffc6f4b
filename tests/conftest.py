import jax
import pytest

import riskcurves  # noqa: F401  (enables float64)

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


# Longest first: the notebooks are the suite's longest items (30–130 s each on 2 cores).
# Collected last, they leave one xdist worker running the final notebook alone; sent
# first, the short tests fill in around them.
_NOTEBOOK_SECONDS = {"muon_phases": 126, "clipping": 78, "muon_momentum": 48, "studies": 48,
                     "signsgd": 48, "momentum": 41, "adagrad_linesearch": 37, "sgd": 27,
                     "scaling_laws": 26}

# whole test files whose items are long (moved as a block: module fixtures stay shared)
_FILE_SECONDS = {"test_readme.py": 25}


def pytest_collection_modifyitems(session, config, items):
    def weight(item):
        path = str(getattr(item, "path", ""))
        if path.endswith(".ipynb"):
            stem = path.rsplit("/", 1)[-1][:-len(".ipynb")]
            return -_NOTEBOOK_SECONDS.get(stem, 60)
        return -_FILE_SECONDS.get(path.rsplit("/", 1)[-1], 0)

    items.sort(key=weight)  # stable: the tests keep their order
