# Flink JobManager / TaskManager / job client for docker-compose.yml, with PyFlink and the job.
#
# The versions must match the local stack: FLINK_VERSION and FLINK_KAFKA_CONNECTOR_VERSION equal
# those in stack/env.sh (tests/test_compose.py checks it). Build context: the repository root.
#   docker build -f docker/flink.Dockerfile -t online-ml-flink:2.2.1 .
ARG FLINK_VERSION=2.2.1
FROM flink:${FLINK_VERSION}-scala_2.12-java17

ARG FLINK_KAFKA_CONNECTOR_VERSION=5.0.0-2.2
# sha256 of the connector jar on Maven Central (the same bytes stack/pom.xml fetches)
ARG FLINK_KAFKA_CONNECTOR_SHA256=5605c691d11a501382c383fecba37a7a552467da5ab7ba904ef5d6f3d62c5616
ARG MAVEN_CENTRAL=https://repo1.maven.org/maven2
ARG PYTHON_VERSION=3.11

USER root

# Python 3.11, as in the local venv. The image is Ubuntu (noble), whose own Python is 3.12: take
# 3.11 from the distribution when it has it, otherwise from the deadsnakes PPA.
RUN set -eux; \
    apt-get update; \
    if ! apt-cache show "python${PYTHON_VERSION}-venv" >/dev/null 2>&1; then \
      apt-get install -y --no-install-recommends software-properties-common gpg-agent; \
      add-apt-repository -y ppa:deadsnakes/ppa; \
      apt-get update; \
    fi; \
    apt-get install -y --no-install-recommends \
      "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv" "python${PYTHON_VERSION}-dev"; \
    rm -rf /var/lib/apt/lists/*

# The job's Python packages, pinned by requirements.txt + constraints.txt. A compiler is only
# needed while pip builds the few packages without a wheel (crcmod), so it is removed again.
COPY requirements.txt constraints.txt /tmp/requirements/
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends gcc libc6-dev; \
    "python${PYTHON_VERSION}" -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --upgrade pip; \
    /opt/venv/bin/pip install --no-cache-dir \
      -r /tmp/requirements/requirements.txt -c /tmp/requirements/constraints.txt; \
    apt-get purge -y --auto-remove gcc libc6-dev; \
    rm -rf /var/lib/apt/lists/* /tmp/requirements

# The Kafka SQL connector built for this Flink version, into the cluster's classpath.
RUN set -eux; \
    jar="flink-sql-connector-kafka-${FLINK_KAFKA_CONNECTOR_VERSION}.jar"; \
    wget -nv -O "/opt/flink/lib/${jar}" \
      "${MAVEN_CENTRAL}/org/apache/flink/flink-sql-connector-kafka/${FLINK_KAFKA_CONNECTOR_VERSION}/${jar}"; \
    echo "${FLINK_KAFKA_CONNECTOR_SHA256}  /opt/flink/lib/${jar}" | sha256sum -c -; \
    chown flink:flink "/opt/flink/lib/${jar}"; \
    chmod 644 "/opt/flink/lib/${jar}"

# The job: stream.py and its package. Checkpoints go to a volume shared by JobManager and
# TaskManager (docker-compose.yml mounts it here; the directory gives the volume its owner).
COPY stream.py /opt/online_ml/stream.py
COPY online_ml/ /opt/online_ml/online_ml/
# the package installed into the venv too, so `import online_ml` works from any working directory
# (Kubernetes application mode runs stream.py from /opt/flink)
COPY pyproject.toml README.md requirements.txt server_requirements.txt /opt/online_ml/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /opt/online_ml
RUN set -eux; \
    mkdir -p /opt/flink/checkpoints; \
    chown -R flink:flink /opt/flink/checkpoints /opt/online_ml

# The TaskManager's Python workers and the `flink run -py` client both use the venv (written into
# the image's conf/config.yaml the same way the entrypoint applies FLINK_PROPERTIES).
ENV PYTHONUNBUFFERED=1
RUN set -eux; \
    /bin/bash /opt/flink/bin/config-parser-utils.sh /opt/flink/conf /opt/flink/bin /opt/flink/lib \
      -Dpython.executable=/opt/venv/bin/python \
      -Dpython.client.executable=/opt/venv/bin/python; \
    chown -R flink:flink /opt/flink/conf

USER flink
WORKDIR /opt/online_ml
