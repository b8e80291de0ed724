"""contesthub's open-data layer.

Two audiences share this package: organizers build the catalog (``sandbox.build``,
``contesthub datasets ...``) and contestants read it from notebooks. Nothing here knows
about JupyterHub; the contest engine (``leaderboard``) and the hub (``hub``) build on it.
"""

__version__ = "0.1.0"
