# feed-newsletter in a container: `newsletter run` (web app, ingest, publish, digest) on port 8080.
# The config is config/newsletter.toml inside the image unless NEWSLETTER_CONFIG names another file (mount it);
# any key can be overridden with NEWSLETTER_<SECTION>_<KEY> (README: Configuration). State lives in /app/var
# (mount a volume there) or, better for several replicas, in PostgreSQL (see compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NEWSLETTER_WEB_HOST=0.0.0.0 \
    NEWSLETTER_WEB_PORT=8080

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ingest ./ingest
COPY newsletter ./newsletter
COPY templates ./templates
COPY config ./config
# Editable, so that the code finds templates/ and config/ beside it, as in a checkout.
RUN pip install -e . \
    && useradd --create-home --uid 10001 newsletter \
    && mkdir -p /app/var \
    && chown newsletter /app/var

USER newsletter
EXPOSE 8080
VOLUME ["/app/var"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["newsletter"]
CMD ["run"]
