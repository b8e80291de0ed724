"""Shared fixtures.

=================  =========  ===============================================================
fixture            scope      what it gives
=================  =========  ===============================================================
``paths``          function   empty data, private and descriptor folders in ``tmp_path``
``make_dataset``   function   writes a crafted ``datasets/<id>/`` (descriptor + raw files) into
                              ``paths.datasets_dir`` and returns the loaded :class:`Dataset`
``build``          function   builds a crafted dataset quietly; returns the :class:`BuildResult`
``demo``           session    every dataset of the repository built once (scale 1) into a
                              session folder; a :class:`Paths`. Read it, never write to it.
``run_cli``        function   runs ``contesthub`` in-process (click's CliRunner) with ``paths``
``contestant``     function   the environment of a contestant's kernel over ``demo``: its own
                              HOME, CONTESTHUB_DATA_ROOT/PRIVATE_ROOT set; yields the home
=================  =========  ===============================================================

Every crafted dataset gets a unique id (``new_id()``) so tests never see each other's files.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from factories import BASE_META, new_id

from sandbox import clock
from sandbox.build import BuildResult, build_dataset
from sandbox.descriptor import Dataset, load_all
from sandbox.settings import PROJECT_ROOT, Paths


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (load and fault runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (see README, Reliability)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(data_root=tmp_path / "data", private_root=tmp_path / "private", datasets_dir=tmp_path / "datasets")
    p.datasets_dir.mkdir()
    return p.ensure()


@pytest.fixture
def make_dataset(paths: Paths):
    def make(tables: dict[str, dict], files: dict[str, bytes | str], ds_id: str | None = None, **meta) -> Dataset:
        ds_id = ds_id or new_id()
        folder = paths.datasets_dir / ds_id
        folder.mkdir(exist_ok=True)
        doc = {"id": ds_id, **copy.deepcopy(BASE_META), **meta, "tables": tables}
        (folder / "dataset.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
        for name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (folder / name).write_bytes(data)
        return load_all(paths.datasets_dir, [ds_id])[0]

    return make


@pytest.fixture
def build(paths: Paths):
    def run(ds: Dataset, **kw) -> BuildResult:
        return build_dataset(ds, paths, **kw)

    return run


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    root = tmp_path_factory.mktemp("demo")
    p = Paths(data_root=root / "data", private_root=root / "private", datasets_dir=PROJECT_ROOT / "datasets").ensure()
    for ds in load_all(p.datasets_dir):
        result = build_dataset(ds, p)
        assert result.status == "built", (ds.id, result.error and result.error.en)
    from leaderboard import contest, publish

    publish.write(contest.load_for(p), p)  # as `contesthub up` does
    return p


@pytest.fixture
def run_cli(paths: Paths):
    from hub.cli import cli

    def run(*args: str, root: Paths | None = None, lang: str = "en"):
        p = root or paths
        return CliRunner().invoke(
            cli,
            [
                "--data-root",
                str(p.data_root),
                "--private-root",
                str(p.private_root),
                "--datasets-dir",
                str(p.datasets_dir),
                "--lang",
                lang,
                *args,
            ],
        )

    return run


@pytest.fixture
def contestant(demo, tmp_path, monkeypatch):
    """The environment a contestant's kernel has: data root from the spawner, a home of its own."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CONTESTHUB_DATA_ROOT", str(demo.data_root))
    monkeypatch.setenv("CONTESTHUB_PRIVATE_ROOT", str(demo.private_root))
    monkeypatch.setenv("CONTESTHUB_THREADS", "2")
    monkeypatch.delenv("CONTESTHUB_MEMORY_LIMIT", raising=False)
    import sandbox

    sandbox.refresh()
    yield home
    sandbox.refresh()


pytest_plugins = ["contest_fixtures"]
pytest_plugins = [*globals().get("pytest_plugins", []), "hub_fixtures"]  # the real-hub fixtures (tests/hub_fixtures.py)


@pytest.fixture(autouse=True)
def _clock_runs_again_after_each_test():
    """A test that pins ``sandbox.clock`` never leaves it pinned for the next one."""
    yield
    clock.pin(None)
