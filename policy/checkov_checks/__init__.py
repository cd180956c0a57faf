"""checkov checks of our own: `--external-checks-dir policy/checkov_checks` (checkov needs this file)."""
