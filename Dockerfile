# One image for the web app and the workers; docker-compose.yml runs the whole stack.
#   docker build -t sift .
#   docker run -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=... -e REDIS_URL=... sift
#   docker run -e ... sift celery -A config worker --loglevel=info
# torch comes from PyPI (a CUDA build on x86_64); for a smaller CPU-only image pass
# --build-arg PIP_EXTRA_INDEX_URL=<PyTorch's CPU wheel index>.
FROM python:3.11-slim AS build

ARG PIP_EXTRA_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
RUN python -m venv /opt/venv

# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
COPY config/__init__.py config/__init__.py
COPY labeling/__init__.py labeling/__init__.py
COPY modeling/__init__.py modeling/__init__.py
RUN pip install .

COPY . .
RUN pip install --no-deps . \
    && SECRET_KEY=build-only-not-secret python manage.py collectstatic --no-input

# The image that runs: the virtual environment and the app with its collected static files,
# without the build stage's pip caches and leftovers.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SIFT_VAR_DIR=/app/var

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
RUN useradd --create-home --uid 1000 sift \
    && mkdir -p /app/var/media \
    && chown -R sift /app/var

# Numeric, so an orchestrator's runAsNonRoot can verify it without reading /etc/passwd.
USER 1000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/', timeout=4)"]
CMD ["sh", "-c", "python manage.py migrate --no-input && gunicorn config.wsgi --bind 0.0.0.0:8000 --workers 3 --timeout 120"]
