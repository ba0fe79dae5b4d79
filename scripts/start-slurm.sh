#!/usr/bin/env bash
# Installs (Debian slurm-wlm, munge) and starts a single-node Slurm cluster on this machine, with
# four fake GPUs typed `h100` (GRES backed by /dev/null, /dev/zero, /dev/full, /dev/urandom), so
# that `kvsweep slurm submit` is tested against a real scheduler. Needs root (CI runs as root).
# Idempotent: a running cluster whose node is up is left alone.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "start-slurm: must run as root (it writes /etc/slurm and starts daemons)" >&2
  exit 1
fi
if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  echo "start-slurm: apt-get install slurm-wlm munge" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat >/etc/slurm/slurm.conf <<'CONF'
ClusterName=ci
SlurmctldHost=localhost
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
GresTypes=gpu
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
NodeName=localhost CPUs=2 RealMemory=8000 Gres=gpu:h100:4 State=UNKNOWN
PartitionName=gpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat >/etc/slurm/gres.conf <<'CONF'
AutoDetect=off
Name=gpu Type=h100 File=/dev/null
Name=gpu Type=h100 File=/dev/zero
Name=gpu Type=h100 File=/dev/full
Name=gpu Type=h100 File=/dev/urandom
CONF

if ! pgrep -x munged >/dev/null; then
  [[ -f /etc/munge/munge.key ]] || mungekey -c
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0700 /etc/munge
  su -s /bin/sh munge -c munged || runuser -u munge -- munged
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "start-slurm: node up: $(sinfo -h -o '%P %T %G')" >&2
    exit 0
  fi
  sleep 0.5
done
echo "start-slurm: the node did not come up; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1
