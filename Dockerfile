# One image for the API (default command), the worker and the one-shot migrate job.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the runtime needs: no .venv, .data (keys!) or tests from the build context.
COPY pyproject.toml alembic.ini worker.py ./
COPY vigil ./vigil
COPY workflows ./workflows
COPY activities ./activities
COPY client ./client
COPY api ./api
COPY deploy ./deploy
COPY vigilctl ./vigilctl
COPY migrations ./migrations
# Bytecode is compiled at build time (PYTHONDONTWRITEBYTECODE-style read-only images would compile every module
# at each start; the replay gate's sandbox imports workflows/ once per history it replays).
RUN pip install . && python -m compileall -q /app

# .data exists and belongs to the app user so a named volume mounted there inherits that ownership.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app vigil \
    && mkdir -p /app/.data \
    && chown vigil:vigil /app/.data
USER vigil

EXPOSE 8000
# uvicorn api.main:app on VIGIL_API_HOST:VIGIL_API_PORT with VIGIL_API_WORKERS processes (api/serve.py).
ENV VIGIL_API_HOST=0.0.0.0 VIGIL_API_PORT=8000
CMD ["python", "-m", "api.serve"]
