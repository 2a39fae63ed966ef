# The trading system in one image: run.py starts every process (feeds, strategy, persist,
# monitor, and the built-in simulator when system.venues = "sim").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 hft
WORKDIR /app
COPY pyproject.toml README.md ./
COPY . .
RUN pip install . && chown -R hft:hft /app
USER hft
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
CMD ["python", "run.py", "--config", "/app/docker/config.toml", "--no-tui"]
