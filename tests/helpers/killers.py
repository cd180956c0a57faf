"""Scripts run as `python -c SCRIPT ARGS` that kill their own process with SIGKILL part-way through an S3
transfer, as a preempted pod dies: no handler, no cleanup."""

from __future__ import annotations

import textwrap

# argv: SRC_DIR VERSION_URL. Publishes SRC_DIR and dies after its second uploaded file.
KILL_MID_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys
    from trainer.store import S3Store, open_store
    from trainer.publish import publish_dir

    real_put_file = S3Store.put_file
    uploads = []

    def put_file(self, key, path):
        real_put_file(self, key, path)
        uploads.append(key)
        if len(uploads) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    S3Store.put_file = put_file
    publish_dir(sys.argv[1], open_store(sys.argv[2]))
    """
)

# argv: the `python -m trainer` arguments. Runs them and dies after $KILL_AFTER downloaded files.
KILL_MID_FETCH = textwrap.dedent(
    """
    import os, signal, sys
    from trainer.store import S3Store
    from trainer.cli import main

    real_get_file = S3Store.get_file
    downloads = []

    def get_file(self, key, path, checked=False):
        out = real_get_file(self, key, path, checked)
        downloads.append(key)
        if len(downloads) == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    S3Store.get_file = get_file
    sys.exit(main(sys.argv[1:]))
    """
)
