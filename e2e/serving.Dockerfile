# TF Serving's stand-in for the real-node e2e (no TF Serving binary exists on these machines): demo.serving, which
# serves the exported SavedModel over TF Serving's REST API, in the trainer image (its TensorFlow loads the
# export), answering to `tensorflow_model_server` and its flags as the stack's serving pod calls it.
# Build from the repository root (e2e/images.py does):  buildah bud -f e2e/serving.Dockerfile .
FROM docker.io/kubeflow-e2e/trainer:0.1.0

USER root
COPY demo/__init__.py demo/serving.py demo/rest_json.py /app/demo/
COPY e2e/serving_entry.py /usr/local/bin/tensorflow_model_server
RUN chmod 0755 /usr/local/bin/tensorflow_model_server

USER 10001:10001
ENTRYPOINT ["tensorflow_model_server"]
