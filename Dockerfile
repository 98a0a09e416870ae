# One image for the three Python services: compose.yaml runs it as the orchestrator
# (`orchestrator serve ...`) and as the kitchen and delivery stubs (`python -m services.X`).
# Only the runtime dependencies are installed: no test extras, no compilers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
# Install the package (orchestrator, services, statecharts and the chart documents) into
# site-packages, then drop the source so every process imports the installed copy.
RUN pip install . \
    && cd / && rm -rf /src \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
    && mkdir /data && chown app:app /data

# The SQLite files live in /data; a new named volume mounted there inherits its owner.
WORKDIR /data
USER app
EXPOSE 8000
CMD ["orchestrator", "serve", "--host", "0.0.0.0", "--db", "/data/orders.db"]
