#!/usr/bin/env bash
# `make bench-peers`: Flower and celery-exporter, each in its own virtualenv, for the side-by-side bench.
#
# Both get the same celery as the main venv, so all three watch the broker with the same client.
# A peer that cannot be installed leaves a marker file with the reason; the bench reports it.
set -u
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
MAIN_PY=${MAIN_PY:-.venv/bin/python}
CELERY_VERSION=$("$MAIN_PY" -c 'import celery; print(celery.__version__)')
REDIS_VERSION=$("$MAIN_PY" -c 'import redis; print(redis.__version__)')
FLOWER_VERSION=${FLOWER_VERSION:-2.2.0}
EXPORTER_VERSION=${EXPORTER_VERSION:-0.11.2}

fresh_venv() {  # fresh_venv DIR: success is marked by DIR/.installed, failure by DIR/.failed
  rm -rf "$1" && "$PYTHON" -m venv "$1" && echo '*' > "$1/.gitignore" && pipq "$1" --upgrade pip
}

pipq() {  # pipq VENV ARGS...: pip install, without the noise of this machine's missing mirror folders
  local venv=$1; shift
  "$venv/bin/pip" install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

failed() {  # failed DIR REASON
  echo "bench-peers: $1: $2" >&2
  mkdir -p "$1" && echo "$2" > "$1/.failed"
  status=1
}

status=0
DECLARED_BUT_REDIS='
from importlib.metadata import requires
for r in requires("prometheus-exporter-celery"):
    r = r.replace(" ", "").replace("(", "").replace(")", "")
    if not r.lower().startswith("redis"):
        print(r)
'

echo "bench-peers: .venv-flower: flower==$FLOWER_VERSION celery[redis]==$CELERY_VERSION" >&2
if fresh_venv .venv-flower \
   && pipq .venv-flower "flower==$FLOWER_VERSION" "celery[redis]==$CELERY_VERSION" \
   && .venv-flower/bin/python -c 'import flower, celery, kombu.transport.redis'; then
  .venv-flower/bin/python -c 'import flower; print(flower.__version__)' > .venv-flower/.installed
else
  failed .venv-flower "pip install flower==$FLOWER_VERSION celery[redis]==$CELERY_VERSION failed"
fi

# prometheus-exporter-celery pins redis<6, which kombu's redis extra (redis>=6.4) rules out: pip
# cannot resolve both. Install it without dependencies, then every requirement its metadata declares
# except redis, plus the main venv's celery[redis] and redis-py (`pip check` reports the redis pin;
# the exporter runs fine with redis-py 8).
echo "bench-peers: .venv-exporter: prometheus-exporter-celery==$EXPORTER_VERSION (--no-deps) + celery[redis]==$CELERY_VERSION redis==$REDIS_VERSION" >&2
if fresh_venv .venv-exporter \
   && pipq .venv-exporter --no-deps "prometheus-exporter-celery==$EXPORTER_VERSION" \
   && mapfile -t REQS < <(.venv-exporter/bin/python -c "$DECLARED_BUT_REDIS") \
   && pipq .venv-exporter "${REQS[@]}" "celery[redis]==$CELERY_VERSION" "redis==$REDIS_VERSION" \
   && .venv-exporter/bin/python -c 'from src.cli import cli'; then
  echo "$EXPORTER_VERSION" > .venv-exporter/.installed
  echo "bench-peers: .venv-exporter: ready (pip's complaint about the redis<6 pin above is expected)" >&2
else
  failed .venv-exporter "pip install prometheus-exporter-celery==$EXPORTER_VERSION (no deps) + its requirements failed"
fi
exit $status
