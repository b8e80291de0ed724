"""Where contesthub keeps its files.

Three roots, kept apart on purpose:

* the **data root** holds the published, de-identified Parquet and ``catalog.json``. It is
  mounted read-only into every contestant sandbox.
* the **private root** holds what contestants must never read: the secret hashing salt,
  raw sources with personal data, build scratch space, quarantined rows and (for the
  contest engine) hidden solutions and the submission store.
* the **conditional root** holds conditional data (有条件开放): one root per dataset,
  ``<conditional root>/<dataset>/``, laid out like the data root, that no sandbox reads unless
  the platform granted the team access (``leaderboard/access.py``). Not-open data is written
  under no root at all.

Environment variables only supply defaults; every CLI command also takes flags.

=========================  ==========================================  =======================
variable                   meaning                                     default
=========================  ==========================================  =======================
``CONTESTHUB_HOME``        base folder for everything below            ``<checkout>/var``
``CONTESTHUB_DATA_ROOT``   published open data                         ``$CONTESTHUB_HOME/data``
``CONTESTHUB_PRIVATE_ROOT`` organizer-only files                       ``$CONTESTHUB_HOME/private``
``CONTESTHUB_CONDITIONAL_ROOT`` conditional data, one root per dataset  ``<data root>/../conditional``
``CONTESTHUB_DATASETS``    folder of dataset descriptors               ``<checkout>/datasets``
=========================  ==========================================  =======================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    data_root: Path
    private_root: Path
    datasets_dir: Path
    #: None: ``CONTESTHUB_CONDITIONAL_ROOT``, else ``conditional`` beside the data root.
    conditional_root: Path | None = None

    def __post_init__(self) -> None:
        if self.conditional_root is None:
            env = os.environ.get("CONTESTHUB_CONDITIONAL_ROOT")
            root = Path(env) if env else Path(self.data_root).parent / "conditional"
            object.__setattr__(self, "conditional_root", root.resolve())

    def conditional_dataset_root(self, dataset_id: str) -> Path:
        """The data root of one conditional dataset (its own catalog.json and versions)."""
        return self.conditional_root / dataset_id

    @classmethod
    def from_env(
        cls,
        data_root: str | os.PathLike | None = None,
        private_root: str | os.PathLike | None = None,
        datasets_dir: str | os.PathLike | None = None,
        conditional_root: str | os.PathLike | None = None,
    ) -> Paths:
        home = Path(os.environ.get("CONTESTHUB_HOME", PROJECT_ROOT / "var"))
        return cls(
            data_root=Path(data_root or os.environ.get("CONTESTHUB_DATA_ROOT", home / "data")).resolve(),
            private_root=Path(private_root or os.environ.get("CONTESTHUB_PRIVATE_ROOT", home / "private")).resolve(),
            datasets_dir=Path(
                datasets_dir or os.environ.get("CONTESTHUB_DATASETS", PROJECT_ROOT / "datasets")
            ).resolve(),
            conditional_root=Path(conditional_root).resolve() if conditional_root else None,
        )

    def ensure(self) -> Paths:
        self.data_root.mkdir(parents=True, exist_ok=True)
        # The private root must not be readable by other accounts (contestants in the
        # single-machine secure mode run as their own Unix users).
        self.private_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.private_root, 0o700)
        return self

    def ensure_conditional(self) -> Path:
        """The conditional root: others may pass through it (0711) but not list it; each
        dataset's root inside is 0700 and opened to approved teams only (hub/conditional_acl.py)."""
        root = self.conditional_root
        if not root.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o711)
        return root
