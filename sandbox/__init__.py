"""contesthub's open-data layer.

Contestants use the functions below (see ``sandbox.api``); organizers build the catalog
with ``contesthub datasets ...`` (``sandbox.build``). Nothing here knows about JupyterHub.

    import sandbox
    sandbox.datasets()
    sandbox.sql("SELECT count(*) FROM hospital_outpatient.visit_records").df()
"""

from sandbox.api import (
    Relation,
    SandboxError,
    dask,
    dask_client,
    datasets,
    describe,
    locate,
    refresh,
    search,
    sql,
    table,
)
from sandbox.errors import ContesthubError

__version__ = "0.1.0"
__all__ = [
    "ContesthubError",
    "Relation",
    "SandboxError",
    "dask",
    "dask_client",
    "datasets",
    "describe",
    "locate",
    "refresh",
    "search",
    "sql",
    "table",
]


def _show_errors_without_traceback() -> None:
    """In a notebook, a ContesthubError shows its message (zh and en), not a traceback."""
    try:
        ip = get_ipython()  # type: ignore[name-defined]
    except NameError:
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        print(f"\033[31m{value.zh}\n{value.en}\033[0m  [{value.code}]")

    ip.set_custom_exc((ContesthubError,), handler)


_show_errors_without_traceback()
