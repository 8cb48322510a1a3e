# Celery Doorman image.
#   docker build -t celery-doorman .                                  the daemon (bin/doorman-run)
#   docker build -t celery-doorman-simulate --target simulate .       the self-contained demo
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.md is the package's long description (pyproject.toml `readme`).
COPY pyproject.toml README.md ./
COPY doorman ./doorman
RUN pip install . && rm -rf /src
COPY bin/doorman-run /usr/local/bin/doorman-run
RUN chmod 0755 /usr/local/bin/doorman-run \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/celery-doorman --create-home \
      --shell /usr/sbin/nologin doorman
# State (analyze's cooldowns) and spool (notify's undelivered alerts): mount a volume here.
ENV DOORMAN_STATE_DIR=/var/lib/celery-doorman
WORKDIR /var/lib/celery-doorman
USER 10001:10001

# The demo: its own redis-server and Celery workers inside the container.
FROM base AS simulate
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
CMD ["doorman-simulate", "--workers", "0", "--enqueue", "5"]

# The default target: the daemon, the same command as the end-to-end tests run (tests/test_deploy.py).
FROM base AS daemon
CMD ["doorman-run"]
