"""Fault drill: S3 unreachable for a few seconds mid-training, while the server keeps its data.

The chief and the worker reach S3 only through a TCP proxy (demo/proxy.py). Once the first checkpoint is on
S3, the proxy resets every connection, open or new, for OUTAGE_S seconds, then lets traffic through again.
Either the trainer's bounded retries carry the run through, or it stops with a clear `error:` line that
names the endpoint and a rerun resumes from the last checkpoint. Either way the job ends with one complete
model version of the usual quality, and the trainer demonstrably hit the outage.
"""

import pytest

from demo.proxy import Proxy
from trainer.train import DEFAULTS

OUTAGE_S = 6.0


@pytest.mark.slow
def test_training_rides_out_a_short_s3_outage(s3_server, job_factory):
    with Proxy.to(s3_server.endpoint) as proxy:
        job = job_factory(endpoint=proxy.endpoint)
        job.prepare()
        chief, worker = job.start()
        first = job.wait_for_checkpoint([chief, worker], min_step=22)
        served_before = proxy.served
        outage = proxy.outage(OUTAGE_S)
        outage.join()
        assert chief.returncode is None, "the chief stopped during a 6 s outage:\n" + "\n".join(chief.tail)
        assert proxy.refused > 0, "the trainer never tried S3 during the outage: the drill proved nothing"

        rcs = [p.wait(timeout=400) for p in (chief, worker)]
        if rcs == [0, 0]:
            result = chief.result()
        else:
            # The other allowed outcome: a clear error naming the endpoint, then a rerun that resumes.
            errors = [line for line in chief.tail if line.startswith("error:")]
            assert errors and proxy.endpoint in errors[-1], "\n".join(chief.tail)
            rerun = job.start()
            job.sup.wait_all("train", rerun, timeout=400)
            result = rerun[0].result()
            assert result["resumed_from_step"] >= first

    assert proxy.served > served_before, "no S3 traffic after the outage"
    assert result is not None
    assert result["steps"] == DEFAULTS["epochs"] * 22  # the default epochs, 22 steps each on the digits
    assert result["accuracy"] >= 0.97, result
    steps = job.checkpoint_steps()
    assert steps[-1] == DEFAULTS["epochs"] * 22, steps  # checkpoints went on after the outage
    print(f"outage of {OUTAGE_S:.0f} s after step {first}: {proxy.refused} connections refused, "
          f"run {'rode it out' if rcs == [0, 0] else 'failed clearly and resumed'}; "
          f"accuracy {result['accuracy']:.4f}")
