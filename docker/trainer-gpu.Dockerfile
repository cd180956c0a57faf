# The GPU trainer image: the trainer image (docker/trainer.Dockerfile) with TensorFlow's CUDA build, whose CUDA
# and cuDNN libraries come as wheels from the package registry (`tensorflow[and-cuda]`); the node's NVIDIA driver
# comes in through the NVIDIA container runtime. The TFJob runs it when training.gpus > 0.
# Build from the repository root:  docker build -f docker/trainer-gpu.Dockerfile -t kubeflow-e2e/trainer-gpu .
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    DATA_CACHE_DIR=/tmp/trainer-data-cache

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin trainer

WORKDIR /app
COPY requirements/trainer-gpu.txt requirements/constraints.txt requirements/
RUN pip install --no-cache-dir -r requirements/trainer-gpu.txt -c requirements/constraints.txt
COPY common/ common/
COPY trainer/ trainer/

USER 10001:10001
ENTRYPOINT ["python", "-m", "trainer"]
CMD ["--help"]
