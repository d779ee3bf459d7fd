# syntax=docker/dockerfile:1
# dealcoach service image: multi-stage, dependencies from the hash-checked lock in their
# own layer, non-root, no migration at start (run `dealcoach db upgrade` as its own step:
# docker-compose.yml's `migrate` service). docs/deploy.md, "Docker".
#
# The base is pinned by digest. Re-check it before a release (this repository's CI has
# no Docker): docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements/runtime.lock requirements/runtime.lock
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY integrations ./integrations
COPY migrations ./migrations
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DEALCOACH_DATA_DIR=/data
RUN useradd --create-home --uid 10001 --user-group dealcoach \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/dealcoach
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["dealcoach", "serve", "--host", "0.0.0.0", "--port", "8000"]
