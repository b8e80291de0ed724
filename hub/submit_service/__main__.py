"""``python -m hub.submit_service``: the submission service as the hub starts it."""

from hub.submit_service.app import main

main()
