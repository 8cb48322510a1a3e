"""Celery task events, read as they pass (daemon mode): decoded (`envelope`), remembered within a
bound (`names`), counted (`counts`), read from Redis (`reader_redis`) or RabbitMQ (`reader_rabbitmq`).

Nothing here writes to the broker or to the workers; `args`, `kwargs`, `result` and tracebacks are
never kept (docs/tasks.md).
"""
