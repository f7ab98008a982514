"""One of the two processes of the sweep that the multi-process kill test
(tests/test_distributed.py) interrupts and resumes: tests/resume_worker.py's sweep, its
config axis split over both processes' devices.

    python tests/distributed_resume_worker.py ADDRESS PROCESS_ID CHECKPOINT_DIR RESULT_DIR FORMAT

Prints, as its last line, a digest of the result this process holds (every process holds
the whole result, so the digests must agree).
"""

import hashlib
import sys

import jax
import numpy as np

import jaxgd


def digest(result: jaxgd.SweepResult) -> str:
    """SHA-256 of the result's histories, statuses and parameters."""
    hashed = hashlib.sha256()
    arrays = [result.history[name] for name in sorted(result.history)]
    arrays += [result.status.astype(str), result.stopped_epoch, result.updates]
    for value in arrays + jax.tree.leaves(result.params):
        hashed.update(np.ascontiguousarray(value).tobytes())
    return hashed.hexdigest()


if __name__ == "__main__":
    address, process_id, checkpoint_dir, result_dir, checkpoint_format = sys.argv[1:]
    jaxgd.distributed.initialize(address, num_processes=2, process_id=int(process_id))
    from resume_worker import main  # after initialize: it builds arrays

    print(digest(main(checkpoint_dir, result_dir, checkpoint_format)), flush=True)
