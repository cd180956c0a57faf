"""Small hand-made resources in the shape the program registers under mocks ({"type", "name", "inputs"},
camelCase Kubernetes inputs, numbers as floats). Each builder returns a compliant resource; tests break
one thing at a time. Standard library only: the policy pack's environment imports this too."""

from __future__ import annotations

import copy
import json

IMAGE = "ghcr.io/example/trainer:0.1.0"
DIGEST_IMAGE = "ghcr.io/example/sidecar@sha256:" + "a" * 64


def container(name: str = "main", image: str = IMAGE) -> dict:
    return {
        "name": name,
        "image": image,
        "env": [
            {"name": "DATA_URL", "value": "s3://data-bucket/data/mnist"},
            {"name": "AWS_SECRET_ACCESS_KEY",
             "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "secret"}}},
        ],
        "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def pod_spec(*containers: dict) -> dict:
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000.0},
        "containers": list(containers) or [container()],
    }


def deployment(name: str = "serving", *containers: dict) -> dict:
    return {
        "type": "kubernetes:apps/v1:Deployment",
        "name": name,
        "inputs": {
            "metadata": {"name": name, "namespace": "kubeflow-e2e"},
            "spec": {
                "replicas": 1.0,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(*containers)},
            },
        },
    }


def service(name: str = "serving", kind: str | None = "ClusterIP") -> dict:
    spec = {"selector": {"app": name}, "ports": [{"port": 8501.0, "targetPort": 8501.0}]}
    if kind:
        spec["type"] = kind
    return {
        "type": "kubernetes:core/v1:Service",
        "name": name,
        "inputs": {"metadata": {"name": name, "namespace": "kubeflow-e2e"}, "spec": spec},
    }


def tfjob(workers: float = 2.0, chief: float | None = 1.0) -> dict:
    def replica(count):
        return {"replicas": count, "restartPolicy": "OnFailure",
                "template": {"spec": pod_spec(container("tensorflow"))}}

    specs = {"Worker": replica(workers)}
    if chief is not None:
        specs["Chief"] = replica(chief)
    return {
        "type": "kubernetes:kubeflow.org/v1:TFJob",
        "name": "mnist",
        "inputs": {
            "apiVersion": "kubeflow.org/v1",
            "kind": "TFJob",
            "metadata": {"name": "mnist", "namespace": "kubeflow-e2e"},
            "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": specs},
        },
    }


def argo_template() -> dict:
    """An Argo WorkflowTemplate: containers sit under templates[].container and .script."""
    return {
        "type": "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate",
        "name": "pipeline",
        "inputs": {
            "metadata": {"name": "pipeline"},
            "spec": {
                "securityContext": {"runAsNonRoot": True},
                "templates": [
                    {"name": "prepare", "container": container("prepare")},
                    {"name": "report", "script": {**container("report"), "source": "print(1)"}},
                ],
            },
        },
    }


def bucket_policy_document(arn: str = "arn:aws:s3:::data-bucket") -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyPlainHttp",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })


def bucket_stack(bucket_id: str = "data-bucket") -> list[dict]:
    """The bucket and the three resources that make it private, encrypted and TLS-only. They point at the
    bucket by its id, as the program passes `bucket.id` (the mocks return the physical name)."""
    return [
        {"type": "aws:s3/bucket:Bucket", "name": "data", "id": bucket_id,
         "inputs": {"bucket": bucket_id, "forceDestroy": False}},
        {"type": "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "name": "data-private",
         "inputs": {"bucket": bucket_id, "blockPublicAcls": True, "blockPublicPolicy": True,
                    "ignorePublicAcls": True, "restrictPublicBuckets": True}},
        {"type": "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
         "name": "data-encryption",
         "inputs": {"bucket": bucket_id,
                    "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"},
                               "bucketKeyEnabled": True}]}},
        {"type": "aws:s3/bucketPolicy:BucketPolicy", "name": "data-tls-only",
         "inputs": {"bucket": bucket_id, "policy": bucket_policy_document()}},
    ]


def good_stack() -> list[dict]:
    return [*bucket_stack(), deployment(), service(), tfjob(), argo_template()]


def repository(image: str) -> str:
    """The image reference without its tag or digest (a registry host may carry a port)."""
    image = image.split("@", 1)[0]
    head, _, last = image.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def bad_variant(resources: list[dict], name: str = "serving") -> list[dict]:
    """The deliberately bad config: in the Deployment and the Service called `name` (metadata.name), the
    first container loses its limits and floats on :latest, and the Service becomes a public LoadBalancer."""
    resources = copy.deepcopy(resources)

    def named(type_token: str) -> dict:
        return next(r for r in resources
                    if r["type"] == type_token and r["inputs"]["metadata"]["name"] == name)

    first = named("kubernetes:apps/v1:Deployment")["inputs"]["spec"]["template"]["spec"]["containers"][0]
    first["image"] = repository(first["image"]) + ":latest"
    first.pop("resources", None)
    named("kubernetes:core/v1:Service")["inputs"]["spec"]["type"] = "LoadBalancer"
    return resources
