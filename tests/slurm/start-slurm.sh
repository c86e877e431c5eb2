#!/usr/bin/env bash
# Start a single-node Slurm on this machine for the tests: munge, slurmctld and slurmd on 127.0.0.1,
# proctrack/linuxproc, task/none, no accounting. Needs root; installs Debian's packages when missing.
# Prints nothing and exits 0 when Slurm answers; exits non-zero with one line when it cannot be started.
# Never overwrites a slurm.conf it did not write (the first line of ours is MARK). `make test` starts it in
# the background while the other tests run; a second call waits for the first (flock) and then finds Slurm up.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "not root: cannot install or start Slurm" >&2; exit 2; fi
MARK="# written by va's tests/slurm/start-slurm.sh"
CONF=/etc/slurm/slurm.conf
if command -v sinfo >/dev/null && sinfo -h >/dev/null 2>&1; then exit 0; fi  # already running
exec 9>"${TMPDIR:-/tmp}/va-start-slurm.lock"
flock -w 840 9 || { echo "another start-slurm.sh held its lock for 14 minutes" >&2; exit 1; }
# A slurm.conf that was there before this script ran and is not ours belongs to the machine.
foreign=0
if [ -e "$CONF" ] && [ "$(head -n 1 "$CONF")" != "$MARK" ]; then foreign=1; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "no apt-get: cannot install Slurm" >&2; exit 2; }
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
if sinfo -h >/dev/null 2>&1; then exit 0; fi  # already running
if [ "$foreign" = 1 ]; then
  echo "$CONF exists and was not written by this script; not replacing it (start that Slurm, or move it away)" >&2
  exit 2
fi

node=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge
cat > "$CONF.va-new" <<CONF
$MARK
ClusterName=va-test
SlurmctldHost=${node}(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=va Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.va-new" "$CONF"
chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
# The daemons outlive this script: they must not inherit the lock (fd 9), or it is never released.
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged 9>&-
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld 9>&-
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd 9>&-
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then exit 0; fi
  scontrol update nodename="${node}" state=resume >/dev/null 2>&1 || true
  sleep 0.5
done
echo "Slurm did not come up: $(tail -n 3 /var/log/slurm/slurmctld.log 2>/dev/null | tr '\n' ' ')" >&2
exit 1
