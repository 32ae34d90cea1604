# The application image: both APIs, the sync worker and beat (docker-compose.yml picks the
# command of each).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --system --create-home --home-dir /app healthapp
WORKDIR /app

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

USER healthapp
ENV HEALTHAPP_ENV=production \
    HEALTHAPP_INSTANCE_PATH=/app/instance \
    METRICS_DIR=/app/instance/metrics
EXPOSE 8000 8001
