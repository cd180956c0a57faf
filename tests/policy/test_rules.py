"""Each guardrail as a plain function: a compliant resource passes, and breaking one thing is reported."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from policy import k8s_rules, manifests, rules
from tests.policy import samples


def names(violations) -> set[str]:
    return {v.rule for v in violations}


def only(rule_name: str, resources, config=None) -> list[rules.Violation]:
    return [v for v in rules.evaluate(resources, config) if v.rule == rule_name]


def first_container(resource: dict) -> dict:
    return resource["inputs"]["spec"]["template"]["spec"]["containers"][0]


def test_compliant_stack_has_no_violations():
    assert rules.evaluate(samples.good_stack()) == []


def test_rule_names_are_unique_and_have_known_scopes():
    assert len(rules.BY_NAME) == len(rules.RULES)
    assert {rule.scope for rule in rules.RULES} <= {rules.RESOURCE, rules.STACK}


# --- containers -----------------------------------------------------------------------------------------


def test_containers_are_found_in_every_workload_shape():
    found = {
        resource["name"]: [c.path for c in manifests.containers(resource)]
        for resource in (samples.deployment(), samples.tfjob(), samples.argo_template())
    }
    assert found == {
        "serving": ["spec.template.spec.containers[0]"],
        "mnist": ["spec.tfReplicaSpecs.Worker.template.spec.containers[0]",
                  "spec.tfReplicaSpecs.Chief.template.spec.containers[0]"],
        "pipeline": ["spec.templates[0].container", "spec.templates[1].script"],
    }
    assert manifests.containers(samples.service()) == []


@pytest.mark.parametrize("missing", ["cpu", "memory"])
def test_missing_limit_is_reported(missing):
    deploy = samples.deployment()
    del first_container(deploy)["resources"]["limits"][missing]
    [violation] = only("k8s-container-limits", [deploy])
    assert f"no {missing} limit" in violation.message and "'main'" in violation.message


def test_requests_alone_are_not_limits():
    deploy = samples.deployment()
    first_container(deploy)["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}}
    [violation] = only("k8s-container-limits", [deploy])
    assert "no cpu or memory limit" in violation.message


def test_tfjob_containers_are_checked_too():
    job = samples.tfjob()
    job["inputs"]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].pop("resources")
    [violation] = only("k8s-container-limits", [job])
    assert "Worker" in violation.message


@pytest.mark.parametrize("rule", ["k8s-container-limits", "k8s-container-non-root",
                                  "k8s-container-drop-capabilities"])
def test_upstream_namespaces_can_be_exempted_from_hardening(rule):
    deploy = samples.deployment()
    deploy["inputs"]["metadata"]["namespace"] = "fluid-system"
    deploy["inputs"]["spec"]["template"]["spec"] = {"containers": [{"name": "csi", "image": "fluid/csi:1.0.8",
                                                                    "securityContext": {"privileged": True}}]}
    assert only(rule, [deploy])
    exempt = {rule: {"excludeNamespaces": ["argo", "fluid-system"]}}
    assert only(rule, [deploy], exempt) == []
    deploy["inputs"]["metadata"]["namespace"] = "kubeflow-e2e"  # our own namespace is never exempt by this
    assert only(rule, [deploy], exempt)


def test_pod_level_non_root_covers_its_containers():
    assert only("k8s-container-non-root", [samples.deployment()]) == []


@pytest.mark.parametrize(
    "pod, own, reported",
    [
        ({}, {}, "may run as root"),  # nothing set: the image's user decides, often root
        ({"runAsNonRoot": True}, {"runAsNonRoot": False}, "may run as root"),  # the container overrides
        ({"runAsNonRoot": True}, {"runAsUser": 0.0}, "runs as user 0"),
        ({}, {"runAsUser": 1000.0}, None),  # an explicit non-zero uid is non-root
        ({}, {"runAsNonRoot": True}, None),
    ],
)
def test_non_root(pod, own, reported):
    deploy = samples.deployment()
    deploy["inputs"]["spec"]["template"]["spec"]["securityContext"] = pod
    first_container(deploy)["securityContext"] = {**own, "capabilities": {"drop": ["ALL"]}}
    found = only("k8s-container-non-root", [deploy])
    assert [reported in v.message for v in found] == ([True] if reported else [])


@pytest.mark.parametrize(
    "security, reported",
    [
        ({"capabilities": {"drop": ["ALL"]}}, []),
        ({"capabilities": {"drop": ["all"]}}, []),
        ({"capabilities": {"drop": ["NET_RAW"]}}, ["keeps Linux capabilities"]),
        ({}, ["keeps Linux capabilities"]),
        ({"capabilities": {"drop": ["ALL"]}, "privileged": True}, ["is privileged"]),
    ],
)
def test_capabilities(security, reported):
    deploy = samples.deployment()
    first_container(deploy)["securityContext"] = security
    found = only("k8s-container-drop-capabilities", [deploy])
    assert [any(text in v.message for text in reported) for v in found] == [True] * len(reported)


@pytest.mark.parametrize(
    "image, problem",
    [
        ("ghcr.io/example/trainer:0.1.0", None),
        (samples.DIGEST_IMAGE, None),
        ("localhost:5000/trainer:1.2", None),
        ("tensorflow/serving:2.19.0", None),
        ("tensorflow/serving", "has no tag"),
        ("localhost:5000/trainer", "has no tag"),  # the port is not a tag
        ("tensorflow/serving:latest", ":latest"),
        ("tensorflow/serving:LATEST", ":latest"),
        ("ghcr.io/example/trainer@sha256:abc", "malformed digest"),
        ("", "has no image"),
        (None, "has no image"),
    ],
)
def test_image_problem(image, problem):
    found = k8s_rules.image_problem(image)
    assert (found is None) if problem is None else (problem in found)


def test_latest_image_is_reported_with_where_it_is():
    pipeline = samples.argo_template()
    pipeline["inputs"]["spec"]["templates"][1]["script"]["image"] = "python:latest"
    [violation] = only("k8s-image-pinned", [pipeline])
    assert violation.resource == "pipeline"
    assert "spec.templates[1].script" in violation.message and "python:latest" in violation.message


@pytest.mark.parametrize(
    "env, reported",
    [
        ({"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG"}, True),
        ({"name": "AWS_ACCESS_KEY_ID", "value": "minioadmin"}, True),
        ({"name": "GITHUB_TOKEN", "value": "ghp_x"}, True),
        ({"name": "DB_PASSWORD", "value": "hunter2"}, True),
        ({"name": "SOME_ID", "value": "AKIAIOSFODNN7EXAMPLE"}, True),  # an access key under any name
        ({"name": "DATABASE_URL", "value": "postgres://app:hunter2@db:5432/app"}, True),
        ({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/token"}, False),  # a path
        ({"name": "CREDENTIALS_SECRET_NAME", "value": "s3-credentials"}, False),  # names a Secret
        ({"name": "DB_PASSWORD", "value": ""}, False),
        ({"name": "S3_ENDPOINT", "value": "http://minio.minio:9000"}, False),
        ({"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}, False),
    ],
)
def test_literal_secrets(env, reported):
    deploy = samples.deployment()
    first_container(deploy)["env"].append(env)
    found = only("k8s-no-literal-secrets", [deploy])
    assert len(found) == (1 if reported else 0)
    if reported:
        assert env["name"] in found[0].message and env["value"] not in found[0].message  # never echo it


# --- Services -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ClusterIP", None])
def test_cluster_internal_service_passes(kind):
    assert only("k8s-no-public-services", [samples.service(kind=kind)]) == []


@pytest.mark.parametrize("kind, switch",
                         [("LoadBalancer", "allowLoadBalancer"), ("NodePort", "allowNodePort")])
def test_exposed_service_is_reported_unless_config_allows_it(kind, switch):
    svc = [samples.service(kind=kind)]
    [violation] = only("k8s-no-public-services", svc)
    assert kind in violation.message and switch in violation.message
    assert only("k8s-no-public-services", svc, {"k8s-no-public-services": {switch: True}}) == []
    other = "allowNodePort" if switch == "allowLoadBalancer" else "allowLoadBalancer"
    assert len(only("k8s-no-public-services", svc, {"k8s-no-public-services": {other: True}})) == 1


def test_chart_values_that_expose_a_service_are_reported():
    chart = {
        "type": "kubernetes:helm.sh/v4:Chart",
        "name": "argo-workflows",
        "inputs": {"chart": "argo-workflows", "values": {"server": {"serviceType": "LoadBalancer"},
                                                          "controller": {"service": {"type": "ClusterIP"}},
                                                          "ui": {"service": {"type": "NodePort"}}}},
    }
    found = only("k8s-no-public-services", [chart])
    assert sorted(v.message.split(" is ")[0] for v in found) == [
        "chart value values.server.serviceType", "chart value values.ui.service.type"]


# --- TFJob ----------------------------------------------------------------------------------------------


def test_tfjob_within_bound_passes():
    assert only("k8s-tfjob-replica-bound", [samples.tfjob(workers=15.0)]) == []  # 15 + chief = 16


def test_tfjob_over_bound_is_reported_and_the_bound_is_configurable():
    job = [samples.tfjob(workers=16.0)]
    [violation] = only("k8s-tfjob-replica-bound", job)
    assert "17 replicas" in violation.message and "bound of 16" in violation.message
    assert only("k8s-tfjob-replica-bound", job, {"k8s-tfjob-replica-bound": {"maxReplicas": 32}}) == []
    assert len(only("k8s-tfjob-replica-bound", [samples.tfjob(workers=2.0)],
                    {"k8s-tfjob-replica-bound": {"maxReplicas": 2}})) == 1


@pytest.mark.parametrize("replicas", [0.0, 1.5, "two"])
def test_tfjob_replica_counts_must_be_whole(replicas):
    [violation] = only("k8s-tfjob-replica-bound", [samples.tfjob(workers=replicas)])
    assert "Worker replicas" in violation.message


def test_tfjob_without_replica_specs_is_reported():
    job = samples.tfjob()
    del job["inputs"]["spec"]["tfReplicaSpecs"]
    assert len(only("k8s-tfjob-replica-bound", [job])) == 1


def test_settings_fill_defaults_and_ignore_unknown_keys():
    rule = rules.BY_NAME["k8s-tfjob-replica-bound"]
    assert rule.settings(None) == {"maxReplicas": 16}
    assert rule.settings({"maxReplicas": 4, "enforcementLevel": "advisory"}) == {"maxReplicas": 4}


# --- the bucket -----------------------------------------------------------------------------------------


def bucket_findings(resources) -> list[str]:
    return [v.message for v in only("s3-bucket-private-encrypted-tls", resources)]


def by_type(resources, token_part):
    return next(r for r in resources if token_part in r["type"])


def test_private_encrypted_tls_bucket_passes():
    assert bucket_findings(samples.bucket_stack()) == []


def test_bucket_alone_fails_all_three_ways():
    findings = bucket_findings(samples.bucket_stack()[:1])
    assert len(findings) == 3
    assert any("BucketPublicAccessBlock" in f for f in findings)
    assert any("encryption" in f for f in findings)
    assert any("TLS" in f for f in findings)


@pytest.mark.parametrize("flag", ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                  "restrictPublicBuckets"])
def test_each_public_access_flag_counts(flag):
    resources = samples.bucket_stack()
    by_type(resources, "PublicAccessBlock")["inputs"][flag] = False
    assert bucket_findings(resources) == [f"public access block leaves {flag} off"]


def test_settings_of_another_bucket_do_not_count():
    resources = samples.bucket_stack() + [{"type": "aws:s3/bucket:Bucket", "name": "logs", "id": "logs-b",
                                           "inputs": {"bucket": "logs-b"}}]
    findings = [v for v in only("s3-bucket-private-encrypted-tls", resources)]
    assert {v.resource for v in findings} == {"logs"} and len(findings) == 3


def test_refs_link_settings_when_ids_are_not_known():
    resources = copy.deepcopy(samples.bucket_stack())
    for resource in resources[1:]:
        resource["inputs"]["bucket"] = "<unknown during preview>"
        resource["refs"] = {"bucket": ["data"]}
    assert bucket_findings(resources) == []
    resources[1]["refs"] = {"bucket": ["other"]}
    assert len(bucket_findings(resources)) == 1


@pytest.mark.parametrize("algorithm, passes", [("AES256", True), ("aws:kms", True), ("", False)])
def test_encryption_algorithm(algorithm, passes):
    resources = samples.bucket_stack()
    rule = by_type(resources, "ServerSideEncryption")["inputs"]["rules"][0]
    rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = algorithm
    assert (bucket_findings(resources) == []) == passes


def test_inline_encryption_counts():
    resources = [r for r in samples.bucket_stack() if "ServerSideEncryption" not in r["type"]]
    resources[0]["inputs"]["serverSideEncryptionConfiguration"] = {
        "rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}}
    assert bucket_findings(resources) == []


@pytest.mark.parametrize(
    "change, finding",
    [
        ({"Condition": {"Bool": {"aws:SecureTransport": "true"}}}, "does not deny requests without TLS"),
        ({"Effect": "Allow"}, "does not deny requests without TLS"),
        ({"Action": "s3:GetObject"}, "does not deny requests without TLS"),
        ({"Condition": {"Bool": {"aws:SecureTransport": False}}}, None),  # a boolean works as well
        ({"Principal": {"AWS": "*"}}, None),
    ],
)
def test_tls_only_statement(change, finding):
    resources = samples.bucket_stack()
    policy = by_type(resources, "bucketPolicy")
    document = json.loads(policy["inputs"]["policy"])
    document["Statement"][0].update(change)
    policy["inputs"]["policy"] = document  # a dict is accepted as well as the JSON string
    findings = bucket_findings(resources)
    assert len(findings) == (1 if finding else 0) and all(finding in f for f in findings)


def test_public_read_is_reported():
    resources = samples.bucket_stack()
    resources[0]["inputs"]["acl"] = "public-read"
    assert bucket_findings(resources) == ["bucket ACL public-read makes objects public"]
    policy = by_type(resources, "bucketPolicy")
    document = json.loads(policy["inputs"]["policy"])
    document["Statement"].append({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                  "Resource": "arn:aws:s3:::data-bucket/*"})
    policy["inputs"]["policy"] = json.dumps(document)
    assert len(bucket_findings(resources)) == 2


# --- the bad variant ------------------------------------------------------------------------------------


def test_bad_variant_is_reported_by_each_guardrail_it_breaks():
    found = rules.evaluate(samples.bad_variant(samples.good_stack()))
    assert names(found) == {"k8s-no-public-services", "k8s-image-pinned", "k8s-container-limits"}
    assert {v.resource for v in found} == {"serving"}
    assert all(str(v).startswith(f"[{v.rule}] serving: ") for v in found)


# --- objects embedded as text (Argo resource templates) -------------------------------------------------


def workflow_creating(job: dict | str) -> dict:
    """An Argo WorkflowTemplate whose step creates `job` from an embedded YAML manifest."""
    text = job if isinstance(job, str) else yaml.safe_dump(job, sort_keys=False)
    return {
        "type": "kubernetes:argoproj.io/v1alpha1:WorkflowTemplate",
        "name": "retrain",
        "inputs": {"metadata": {"name": "retrain"}, "spec": {"templates": [
            {"name": "train", "resource": {"action": "create", "manifest": text}}]}},
    }


def test_embedded_tfjob_is_checked_like_a_real_one():
    job = samples.tfjob(workers=2.0)["inputs"]
    assert rules.evaluate([workflow_creating(job)]) == []
    paths = [c.path for c in manifests.containers(workflow_creating(job))]
    assert paths[0] == ("spec.templates[0].resource.manifest > "
                        "spec.tfReplicaSpecs.Worker.template.spec.containers[0]")

    job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 40
    job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["image"] = "trainer:latest"
    found = rules.evaluate([workflow_creating(job)])
    assert names(found) == {"k8s-tfjob-replica-bound", "k8s-image-pinned"}
    assert "TFJob in spec.templates[0].resource.manifest asks for 41 replicas" in str(found)


def test_unreadable_embedded_tfjob_fails_closed():
    resource = workflow_creating("kind: TFJob\nspec: {tfReplicaSpecs: {Worker: {replicas: {{workers}}}}}\n")
    found = rules.evaluate([resource])
    assert "k8s-tfjob-replica-bound" in names(found) and "k8s-container-limits" in names(found)
    assert "unreadable YAML" in str(found)


def test_embedded_objects_that_are_not_tfjobs_are_left_to_the_other_rules():
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    assert rules.evaluate([workflow_creating(config_map)]) == []
