# The producer (kafka_producer.py) and the drawing board (model_server.py) for docker-compose.yml.
# Build context: the repository root.
#   docker build -f docker/app.Dockerfile -t online-ml-app .
# server_requirements.txt holds everything both need (the producer only needs kafka-python,
# numpy and scikit-learn, all in it); apache-flink stays out of this image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# pycairo (for rlPyCairo, the SVG rasteriser) has no Linux wheel: build it with the cairo headers
# here, and keep only the cairo runtime library in the final image.
FROM ${PYTHON_IMAGE} AS build
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc libc6-dev libcairo2-dev pkg-config; \
    rm -rf /var/lib/apt/lists/*
COPY server_requirements.txt constraints.txt /tmp/requirements/
RUN set -eux; \
    python -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --upgrade pip; \
    /opt/venv/bin/pip install --no-cache-dir \
      -r /tmp/requirements/server_requirements.txt -c /tmp/requirements/constraints.txt

FROM ${PYTHON_IMAGE}
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libcairo2; \
    rm -rf /var/lib/apt/lists/*; \
    useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
WORKDIR /app
COPY online_ml/ online_ml/
COPY templates/ templates/
COPY static/ static/
COPY kafka_producer.py model_server.py redis_clear.py ./
USER app
EXPOSE 8066
# the production server, as make demo runs it (docker-compose.yml and deploy/kubernetes say the same)
CMD ["granian", "--interface", "wsgi", "--host", "0.0.0.0", "--port", "8066", "--workers", "2", \
     "--blocking-threads", "1", "--respawn-failed-workers", "--respawn-interval", "1", \
     "--workers-kill-timeout", "3", "--factory", "online_ml.server:create_app"]
