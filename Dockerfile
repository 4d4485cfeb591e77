FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE alembic.ini requirements.lock ./
COPY api ./api
COPY checklists ./checklists
COPY geo ./geo
COPY recurrence ./recurrence
COPY sim ./sim
COPY storage ./storage
COPY validation ./validation
RUN pip install -c requirements.lock . && useradd --system --no-create-home terrain
USER terrain
EXPOSE 8000
# One process per container: each serves its own /metrics, so Prometheus sees every process
# as a target of its own. Scale with replicas (compose.prod.yml), not with --workers.
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
