# dispatcher as a container: `docker build -t dispatcher .`, then mount your config at
# /etc/dispatcher/dispatcher.yaml and pass secrets as environment variables (README, "Running in a
# container"). The image runs `dispatcher run` as an unprivileged user and answers SIGTERM by
# draining events in flight within shutdown_timeout_s (8 s), inside Docker's 10 s grace.
ARG PYTHON_IMAGE=python:3.11.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/dispatcher
# The dependencies get a layer of their own, rebuilt only when the lock changes: the runtime
# dependencies and the `speed` extra (uvloop), at the versions and hashes of requirements.lock
# (scripts/lock writes it from pyproject.toml), so the image runs what the tests ran.
COPY requirements.lock ./
RUN /opt/dispatcher/bin/pip install --require-hashes --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
RUN /opt/dispatcher/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/dispatcher/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DISPATCHER_CONFIG=/etc/dispatcher/dispatcher.yaml
RUN groupadd --system --gid 10001 dispatcher \
    && useradd --system --uid 10001 --gid dispatcher --home-dir /var/lib/dispatcher \
       --create-home --shell /usr/sbin/nologin dispatcher
COPY --from=build /opt/dispatcher /opt/dispatcher
COPY config/container.yaml /etc/dispatcher/dispatcher.yaml
USER 10001:10001
WORKDIR /var/lib/dispatcher
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dispatcher", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dispatcher", "run"]
