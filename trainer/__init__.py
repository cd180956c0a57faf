"""The trainer image's code: `python -m trainer <command>`.

Nothing heavy is imported here: `sync-model` and `predict` run in an image without TensorFlow.
"""
