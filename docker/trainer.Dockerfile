# The trainer image: TensorFlow (CPU) + trainer/ and common/. The TFJob operator runs it with TF_CONFIG set.
# Build from the repository root:  docker build -f docker/trainer.Dockerfile -t kubeflow-e2e/trainer .
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DATA_CACHE_DIR=/tmp/trainer-data-cache

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin trainer

WORKDIR /app
COPY requirements/trainer.txt requirements/constraints.txt requirements/
RUN pip install --no-cache-dir -r requirements/trainer.txt -c requirements/constraints.txt
COPY common/ common/
COPY trainer/ trainer/

USER 10001:10001
ENTRYPOINT ["python", "-m", "trainer"]
CMD ["--help"]
