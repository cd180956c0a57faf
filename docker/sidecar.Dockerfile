# The TF Serving sidecar: `python -m trainer sync-model` with boto3 and numpy only (no TensorFlow).
# Build from the repository root:  docker build -f docker/sidecar.Dockerfile -t kubeflow-e2e/sidecar .
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin sidecar

WORKDIR /app
COPY requirements/sidecar.txt requirements/constraints.txt requirements/
RUN pip install --no-cache-dir -r requirements/sidecar.txt -c requirements/constraints.txt
COPY common/ common/
COPY trainer/ trainer/

USER 10001:10001
ENTRYPOINT ["python", "-m", "trainer", "sync-model"]
CMD ["--dest", "/models/mnist", "--watch", "--interval", "10", "--keep", "2"]
