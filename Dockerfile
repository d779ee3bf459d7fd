# dealcoach service image: slim, non-root, runs `dealcoach serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DEALCOACH_DATA_DIR=/data

RUN useradd --create-home --uid 10001 dealcoach \
    && mkdir -p /data && chown dealcoach /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY integrations ./integrations
COPY migrations ./migrations
RUN pip install .

USER dealcoach
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["sh", "-c", "dealcoach db upgrade && exec dealcoach serve --host 0.0.0.0 --port 8000"]
