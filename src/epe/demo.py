"""``epe demo``: user OMLUSER, the IRIS table and example scripts from Oracle's documentation."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from epe.auth.passwords import hash_password
from epe.core.scripts import parse_script
from epe.service import tables
from epe.service.audit import AuditTrail
from epe.service.limits import UserLimits
from epe.service.services import open_catalog_of, open_store_of
from epe.service.users import create_user
from epe.settings import Settings

DEMO_USER = "OMLUSER"
# OML's IRIS columns, in the order of scikit-learn's feature matrix.
IRIS_COLUMNS = ["SEPAL_LENGTH", "SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]

# name -> (description, source). The functions are the ones Oracle's pages use.
SCRIPTS: dict[str, tuple[str, str]] = {
    "hello_world": ("Say hello", 'def hello_world():\n    return "Hello World!"\n'),
    "compute_random_mean": (
        "Mean of 10 random numbers drawn with seed = index (index-apply)",
        "def compute_random_mean(index):\n"
        "    import numpy as np\n"
        "    import scipy\n"
        "    from statistics import mean\n"
        "    np.random.seed(index)\n"
        "    res = np.random.random((100, 1)) * 10\n"
        "    return mean(res[1])\n"),
    "RandomRedDots": (
        "A DataFrame of 10 random points, drawn twice (graphics)",
        "def RandomRedDots(num_dots_1=100, num_dots_2=10):\n"
        "    import numpy as np\n"
        "    import pandas as pd\n"
        "    import matplotlib.pyplot as plt\n"
        "    d = {'id': range(1, 10), 'val': [x / 100 for x in range(1, 10)]}\n"
        "    df = pd.DataFrame(data=d)\n"
        "    fig = plt.figure(1)\n"
        "    ax = fig.add_subplot(111)\n"
        "    ax.scatter(range(0, int(num_dots_1)), np.random.rand(int(num_dots_1)), c='r')\n"
        "    fig.suptitle('Random Red Dots')\n"
        "    plt.show()\n"
        "    fig2 = plt.figure(2)\n"
        "    ax2 = fig2.add_subplot(111)\n"
        "    ax2.scatter(range(0, int(num_dots_2)), np.random.rand(int(num_dots_2)), c='r')\n"
        "    fig2.suptitle('Random Red Dots')\n"
        "    plt.show()\n"
        "    return df\n"),
    "group_count": (
        "Rows per group (group-apply)",
        "def group_count(dat):\n"
        "    import pandas as pd\n"
        "    return pd.DataFrame([(dat['SPECIES'][0], dat['SEPAL_LENGTH'][0], dat.shape[0])],\n"
        "                        columns=['SPECIES', 'SEPAL_LENGTH', 'COUNT'])\n"),
}


def load_demo(settings: Settings, password: str) -> Iterator[str]:
    store = open_store_of(settings)
    audit = AuditTrail(store.audit)
    catalog = open_catalog_of(settings)
    try:
        if store.get_user(DEMO_USER) is None:
            create_user(store, audit, catalog, name=DEMO_USER, password=password)
            yield f"user {DEMO_USER} created"
        else:
            store.set_password(DEMO_USER, hash_password(password))
            yield f"user {DEMO_USER} exists; password reset"
        for name, (description, source) in SCRIPTS.items():
            parse_script(source)
            store.put_script(owner=DEMO_USER, name=name, source=source,
                             description=description, is_global=False, created_by=DEMO_USER,
                             overwrite=True)
        yield f"scripts loaded: {', '.join(SCRIPTS)}"
    finally:
        catalog.close()
        audit.close()
        store.close()
    yield load_iris(settings)


def load_iris(settings: Settings) -> str:
    """IRIS for OMLUSER, replacing any earlier copy so the demo can be loaded again."""
    store = open_store_of(settings)
    catalog = open_catalog_of(settings)
    try:
        info = tables.keep(catalog, store, UserLimits(settings, store), owner=DEMO_USER,
                           name="IRIS", table=iris_table(), overwrite=True)
    finally:
        catalog.close()
        store.close()
    return f"table IRIS loaded: {info.rows} rows"


def iris_table() -> pa.Table:
    """Fisher's iris data in OML's shape, from scikit-learn's bundled copy (no network)."""
    from sklearn.datasets import load_iris  # slow to import; only the demo needs it

    iris = load_iris()
    columns = {name: iris.data[:, i] for i, name in enumerate(IRIS_COLUMNS)}
    columns["SPECIES"] = iris.target_names[iris.target].astype(str)
    return pa.table(columns)

