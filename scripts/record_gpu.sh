#!/usr/bin/env bash
# Record the GPU timings the lessons show, on a machine with an NVIDIA GPU: `make gpu-record`, or
# `bash scripts/record_gpu.sh` from the repository's root. Not part of `make test`: no test needs a GPU.
# `bash scripts/record_gpu.sh --dry-run` (`make gpu-record-plan`) prints what each recording runs and how long it
# should take, on any machine, GPU or not.
#
# Uses $PYTHON if set, else the course's .venv if its torch sees a GPU, else python3 (a GPU machine's own torch).
# Each recording below runs under `timeout`, all of them together within 10 minutes (rented and shared GPU machines
# often limit one command to that); each rewrites its results file after every experiment, so a time-out keeps what
# finished. A later lesson adds its recording as one more `record` line: a name, the seconds it may take, its
# arguments; and its estimate to the dry run.
set -u
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        PYTHON=.venv/bin/python
    elif [ "${1:-}" = "--dry-run" ] && [ -x .venv/bin/python ]; then
        PYTHON=.venv/bin/python  # a plan needs no GPU
    fi
fi

if [ "${1:-}" = "--dry-run" ]; then
    echo "== lesson 06 (at most 300 s)"
    "$PYTHON" -m mha.bench --device cuda --suite gpu --dry-run | sed -n '/estimated time/,$p'
    echo "== lesson 07 (at most 90 s): python -m mha.decoding speed --device cuda (it has no estimate; stopped at 90 s)"
    echo "== lesson 10 (at most 150 s)"
    "$PYTHON" -m mha.bench --device cuda --suite flash --dry-run | sed -n '/estimated time/,$p'
    exit 0
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

# lesson 06: about 5 minutes on an H100 or H200 (`python -m mha.bench --device cuda --dry-run` prints the estimate)
record "lesson 06" 300 -m mha.bench --device cuda --suite gpu --json notebooks/results/06_gpu_{device}.json --csv notebooks/results/06_gpu_{device}.csv --no-progress
# lesson 07: the next token with and without the cache, and a cached step against kv_heads
record "lesson 07" 90 -m mha.decoding speed --device cuda --json notebooks/results/07_speed_gpu.json --quiet
# lesson 10: the Triton kernel against SDPA's kernels, about 2 minutes (`--suite flash --dry-run`)
record "lesson 10" 150 -m mha.bench --device cuda --suite flash --json notebooks/results/10_gpu_{device}.json --csv notebooks/results/10_gpu_{device}.csv --no-progress

echo "== results files:"
ls -l notebooks/results/06_gpu_* notebooks/results/07_speed_gpu* notebooks/results/10_gpu_* 2>/dev/null || echo "   none written"
exit $failed
