"""Everything JupyterHub: configuration, the submission service, and the ``contesthub`` CLI root."""
