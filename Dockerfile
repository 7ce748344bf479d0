# One image for every role; the command picks the role (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY saga_streams ./saga_streams
RUN pip install .

# Each role keeps its RocksDB tables here; mount a volume so they survive the container.
ENV DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000 8001 8002 8003

ENTRYPOINT ["python", "-m", "saga_streams"]
CMD ["worker", "orchestrator"]
