"""What a GitHub Actions job checks before it touches a stack (`python -m ci plan|registry|timeout`, see
`ci.settings`). Standard library only, so a job can run it before installing anything (the render behind
`timeout` is imported only for that command)."""
