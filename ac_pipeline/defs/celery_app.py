"""The app a Celery worker runs: `celery -A ac_pipeline.defs.celery_app worker -Q "$AC_PIPELINE_CELERY_QUEUE"`.

A module of its own because Celery finds an app by importing a module and taking its `app`, and only a worker
should build one (the definitions import executor.py, which imports nothing of Celery).
"""

from ac_pipeline.defs.executor import worker_app

app = worker_app()
