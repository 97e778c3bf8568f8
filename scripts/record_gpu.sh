#!/usr/bin/env bash
# Record the GPU timings the lessons show, on a machine with an NVIDIA GPU: `make gpu-record`, or
# `bash scripts/record_gpu.sh` from the repository's root. Not part of `make test`: no test needs a GPU.
#
# Uses $PYTHON if set, else the course's .venv if its torch sees a GPU, else python3 (a GPU machine's own torch).
# Each recording below runs under `timeout`, sized to end within 10 minutes (rented and shared GPU machines often
# limit one command to that); each rewrites its results file after every experiment, so a time-out keeps what
# finished.
# A later lesson adds its recording as one more `record` line: a name, the seconds it may take, its arguments.
set -u
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        PYTHON=.venv/bin/python
    fi
fi
if ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "record_gpu: $PYTHON sees no CUDA GPU (torch.cuda.is_available() is False); nothing recorded" >&2
    exit 1
fi

failed=0
record() {  # record NAME SECONDS ARGUMENTS...: one recording, stopped (SIGINT, it keeps what finished) at SECONDS
    local name=$1 seconds=$2
    shift 2
    echo "== $name: $PYTHON $*  (at most $seconds s)"
    timeout --signal=INT --kill-after=15 "$seconds" "$PYTHON" "$@"
    local status=$?
    [ $status -eq 0 ] || { echo "== $name stopped with status $status (124 or 130: out of time)"; failed=1; }
}

# lesson 06: about 8 minutes on an H100 or H200 (`python -m mha.bench --device cuda --dry-run` prints the estimate)
record "lesson 06" 540 -m mha.bench --device cuda --suite gpu --json notebooks/results/06_gpu_{device}.json --csv notebooks/results/06_gpu_{device}.csv --no-progress

echo "== results files:"
ls -l notebooks/results/06_gpu_* 2>/dev/null || echo "   none written"
exit $failed
