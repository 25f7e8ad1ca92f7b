# Shared by scripts/run and scripts/test: set up the virtualenv and make sure RabbitMQ answers.
# shellcheck shell=bash

die() { echo "dispatcher: $*" >&2; exit 1; }

ensure_venv() {
  local python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || die "python3 (3.11 or newer) is not installed: apt-get install python3 python3-venv"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "dispatcher needs Python 3.11 or newer; $("$python" --version) found (set PYTHON=/path/to/python3.11)"
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv || die "could not create .venv: apt-get install python3-venv"
  fi
  # Reinstall only when pyproject.toml or the lock changed since the last install (by content,
  # not mtime: a copy or checkout that keeps old timestamps still reinstalls). The versions come
  # from requirements-dev.lock, every file checked against its hash, so every machine gets the
  # same packages; dispatcher itself is installed editable on top, without dependencies.
  local stamp
  stamp="$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -d' ' -f1)"
  if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
    echo "dispatcher: installing dependencies into .venv (log: .venv/install.log)" >&2
    if ! { .venv/bin/python -m pip install --upgrade pip \
           && .venv/bin/python -m pip install --require-hashes -r requirements-dev.lock \
           && .venv/bin/python -m pip install --no-deps -e .; } >.venv/install.log 2>&1; then
      tail -n 20 .venv/install.log >&2
      die "pip install failed (whole log: .venv/install.log)"
    fi
    echo "$stamp" >.venv/.installed
  fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_rabbitmq() {
  local host="${RABBITMQ_HOST:-127.0.0.1}" port="${RABBITMQ_PORT:-5672}"
  port_open "$host" "$port" && return 0
  if [ "$host" = 127.0.0.1 ] && command -v rabbitmq-server >/dev/null; then
    echo "dispatcher: RabbitMQ is not answering on $host:$port; starting it" >&2
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 90); do
      port_open "$host" "$port" && return 0
      sleep 1
    done
    die "RabbitMQ was started but does not answer on $host:$port after 90 s (see /var/log/rabbitmq/)"
  fi
  die "no RabbitMQ on $host:$port and none installed here: apt-get install rabbitmq-server (or set RABBITMQ_HOST/RABBITMQ_PORT)"
}

ensure_redis() {
  # Rate limits shared by replicas live in Redis; its tests need one on 127.0.0.1:6379.
  local host="${REDIS_HOST:-127.0.0.1}" port="${REDIS_PORT:-6379}"
  port_open "$host" "$port" && return 0
  if [ "$host" = 127.0.0.1 ] && command -v redis-server >/dev/null; then
    echo "dispatcher: Redis is not answering on $host:$port; starting it" >&2
    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --save '' >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do
      port_open "$host" "$port" && return 0
      sleep 1
    done
    die "Redis was started but does not answer on $host:$port after 30 s"
  fi
  die "no Redis on $host:$port and none installed here: apt-get install redis-server (or set REDIS_HOST/REDIS_PORT)"
}

ensure_postgres() {
  # The SQL subscription store's tests need PostgreSQL on 127.0.0.1:5432 (trust auth for the
  # postgres user); each test creates and drops a database of its own. They skip only where no
  # PostgreSQL is installed.
  local host="${PGHOST_TEST:-127.0.0.1}" port="${PGPORT_TEST:-5432}"
  port_open "$host" "$port" && return 0
  if [ "$host" = 127.0.0.1 ] && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "dispatcher: PostgreSQL is not answering on $host:$port; starting it" >&2
    local version
    for version in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 30); do
      port_open "$host" "$port" && return 0
      sleep 1
    done
    die "PostgreSQL was started but does not answer on $host:$port after 30 s"
  fi
  echo "dispatcher: no PostgreSQL on $host:$port; its tests will skip if none is installed" >&2
}
