"""doorman-simulate: a local redis-server and real Celery workers, watched by the real pipeline.

Library side only (no click): `scenario` turns options into a plan, `broker`, `workers` and
`pipeline` own one kind of process each, `run` puts them together and tears everything down.
"""
