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
from sandbox.conditional_access import access_requests, report_error, request_access, request_dataset
from sandbox.errors import ContesthubError
from sandbox.submit import SubmissionResult, my_submissions, submit, validate

__version__ = "0.1.0"
__all__ = [
    "ContesthubError",
    "Relation",
    "SandboxError",
    "SubmissionResult",
    "access_requests",
    "dask",
    "dask_client",
    "datasets",
    "describe",
    "locate",
    "my_submissions",
    "refresh",
    "report_error",
    "request_access",
    "request_dataset",
    "search",
    "sql",
    "submit",
    "table",
    "validate",
]


def _setup_notebook() -> None:
    """In IPython: show a ContesthubError as its message (zh and en), not a traceback, and
    render Altair charts offline."""
    try:
        ip = get_ipython()  # type: ignore[name-defined]
    except NameError:
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        print(f"\033[31m{value.zh}\n{value.en}\033[0m  [{value.code}]")

    ip.set_custom_exc((ContesthubError,), handler)
    # Altair's default renderer loads JavaScript from a CDN, which a sandbox cannot reach, and
    # JupyterLab 4 renders Vega-Lite by itself: hand charts to that built-in renderer. Registered
    # by class name, so that Altair (a second of CPU to import) loads only in notebooks that use it.
    for module in ("altair.vegalite.v5.api", "altair.vegalite.v6.api"):
        ip.display_formatter.mimebundle_formatter.for_type_by_name(module, "TopLevelMixin", chart_bundle)


def chart_bundle(chart) -> dict:
    """An Altair chart as a Vega-Lite bundle for JupyterLab's renderer (no CDN)."""
    spec = {key: value for key, value in chart.to_dict().items() if key != "$schema"}
    return {"application/vnd.vegalite.v5+json": spec, "text/plain": "<Altair chart / 图表>"}


_setup_notebook()
