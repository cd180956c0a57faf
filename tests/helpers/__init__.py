"""What several test modules share, one copy each: the import graph of the tree (`imports`), test processes
and their JSON results (`process`), buckets for module-scoped fixtures (`s3`), model-version folders
(`versions`), the scripts that die mid-transfer (`killers`) and a stand-in Kubernetes API server
(`apiserver`). The stacks' renders are cached once per session in tests/render/renders.py; fixtures live in
the conftest.py files."""
