"""`python -m demo` (`make demo`): the whole pipeline on this machine, offline, as `pulumi up` runs it on a
cluster: render -> S3 server -> prepare-data -> chief + workers -> (TensorBoard) -> sync-model -> evaluate ->
predict. Every process's command, args and environment come from the dev stack's render (demo/podspecs.py).

Knobs (environment):
  DATASET=digits|mnist   digits: scikit-learn's bundled digits, offline (default); mnist: download mnist.npz;
                         or the path or URL of a file in the mnist.npz layout (config data.prepareSource)
  WORKERS=N              workers beside the chief (default 1); 0 trains in the chief alone (the TFJob's Worker
                         replica count)
  EPOCHS=N               config training.epochs (the stack's default 40)
  TRAIN_ARGS="..."       more flags after the TFJob's `train` command, e.g. TRAIN_ARGS="--batch-size 128 --seed 3"
  TENSORBOARD=1          serve TensorBoard on the run's S3 logs while training (from .venv-tensorboard, which
                         is created on request: TensorBoard reads s3:// only where TensorFlow is not installed)
  DEMO_DIR=path          where the logs go (default .demo/<timestamp>/)
"""


from __future__ import annotations

import sys

from demo import supervisor
from demo.settings import Settings
from demo.stages import Demo
from demo.supervisor import StageFailed


def main() -> int:
    supervisor.stop_on_signals()  # Ctrl-C, `kill`, a closed terminal: `finally` stops every process started
    settings = Settings()
    settings.dir.mkdir(parents=True, exist_ok=True)
    demo = Demo(settings)
    try:
        demo.run()
        return 0
    except StageFailed as e:
        print(f"\nFAILED at stage '{e.stage}': {e.reason}", file=sys.stderr)
        if e.stage == "prepare-data" and settings.dataset != "digits":
            print("  DATASET=mnist (or a URL) needs the network: unset DATASET for the offline digits",
                  file=sys.stderr)
        for log in e.logs:
            print(f"  log: {log}", file=sys.stderr)
        print(f"  all logs: {settings.dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: stopping every process the demo started (logs: {settings.dir})", file=sys.stderr)
        return 130
    finally:
        demo.stop()


if __name__ == "__main__":
    sys.exit(main())
