#!/bin/sh
# gpuorch MPS hook: Slurm's Prolog and Epilog for GPU slices with a compute
# limit. For such a job (its comment carries gpuorch-mps=PCT[,MIBM], which
# `gpuorch slice plan --script` and the Slurm executor add when the pools
# file has [mps] enabled = true) the prolog starts one MPS control daemon on
# the job's GPUs, with per-job CUDA_MPS_PIPE_DIRECTORY and
# CUDA_MPS_LOG_DIRECTORY under MPS_DIR/<jobid>, and sets the slice's limits
# on it; the epilog stops it. See docs/gpu-slicing.md, "MPS per job".
#
# `gpuorch admin apply` installs this file from the pools file's [mps] table
# (the three paths below filled in). By hand: copy it, set the paths, and
# point slurm.conf at it (both lines), then `scontrol reconfigure`:
#   Prolog=/etc/slurm/gpuorch-mps-hook
#   Epilog=/etc/slurm/gpuorch-mps-hook
# It never fails: a non-zero prolog would drain the node. A job whose MPS is
# refused learns why from MPS_DIR/<jobid>/refused.
GPUORCH=/usr/local/bin/gpuorch
MPS_DIR=/run/gpuorch-mps
MPS_CONTROL=/usr/bin/nvidia-cuda-mps-control

# Slurm gives prologs no search path; gpuorch runs scontrol (only to tell a
# stale daemon of an ended job from a live one).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

# Every other job costs this case statement and nothing else.
case " ${SLURM_JOB_COMMENT-} " in
*" gpuorch-mps="*) ;;
*) exit 0 ;;
esac
case ${SLURM_SCRIPT_CONTEXT-} in
prolog_slurmd) what=prolog ;;
epilog_slurmd) what=epilog ;;
*)
	echo "gpuorch-mps-hook: not run as Slurm's Prolog or Epilog (SLURM_SCRIPT_CONTEXT=${SLURM_SCRIPT_CONTEXT-})" >&2
	exit 0
	;;
esac
if [ ! -x "$GPUORCH" ]; then
	echo "gpuorch-mps-hook: $GPUORCH is missing: no MPS for job ${SLURM_JOB_ID-}" >&2
	exit 0
fi
GPUORCH_MPS_DIR=$MPS_DIR GPUORCH_MPS_CONTROL=$MPS_CONTROL "$GPUORCH" slice mps "$what" || true
exit 0
