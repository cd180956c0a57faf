# TensorBoard reading s3:// logdirs itself. It does so only when TensorFlow is absent (tensorboard + boto3),
# and then wants S3_ENDPOINT as a full URL with scheme (http://minio.minio:9000).
# Build from the repository root:  docker build -f docker/tensorboard.Dockerfile -t kubeflow-e2e/tensorboard .
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=6006

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin tensorboard

WORKDIR /app
COPY requirements/tensorboard.txt requirements/constraints.txt requirements/
RUN pip install --no-cache-dir -r requirements/tensorboard.txt -c requirements/constraints.txt

USER 10001:10001
EXPOSE 6006
# LOGDIR (s3://<bucket>/runs/) has no default: the stack sets it, and a missing one fails with a message.
ENTRYPOINT ["sh", "-c", "exec tensorboard --logdir \"${LOGDIR:?set LOGDIR to s3://<bucket>/runs/}\" --bind_all --port \"$PORT\""]
