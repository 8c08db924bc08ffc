#!/bin/bash
# Memory under a limit: 3 nodes on loopback, each in its own cgroup-v1 memory group of
# $1 MiB (0 = no limit), loaded with 1M keys through /v1/txn, then 10 s of writes; prints RSS
# (anon/file) per node, the digests and the cgroup counters. Root only. Usage:
#   make build && bench/scripts/memlimit.sh 100
set -u
LIMIT=$1; BIN=${RAFTKV_BIN:-bin/raftkv}; D=${TMPDIR:-/tmp}/raftkv-memlimit-$LIMIT; rm -rf $D; mkdir -p $D
start() { $BIN server --id n$1 --data-dir $D/n$1 --http-addr 127.0.0.1:1850$1 --raft-addr 127.0.0.1:1830$1 --server-stabilization-time 1s "${@:2}" > $D/n$1.log 2>&1 & echo $!; }
P1=$(start 1 --bootstrap); sleep 2
P2=$(start 2 --join 127.0.0.1:18501); P3=$(start 3 --join 127.0.0.1:18501)
for i in 1 2 3; do eval p=\$P$i
  if [ "$LIMIT" != 0 ]; then cg=/sys/fs/cgroup/memory/raftkv-mem-n$i; mkdir -p $cg; echo $((LIMIT*1024*1024)) > $cg/memory.limit_in_bytes; echo $p > $cg/cgroup.procs; fi
done
for t in $(seq 1 60); do curl -sf localhost:18501/v1/operator/autopilot/health | grep -q '"Healthy":true' && break; sleep 1; done
python3 "$(dirname "$0")/load-txn.py" 127.0.0.1:18501 1000000
sleep 5
for i in 1 2 3; do eval p=\$P$i; echo "n$i $(grep -E '^(VmRSS|VmHWM|RssAnon|RssFile):' /proc/$p/status | awk '{printf "%s%d MiB ", $1, $2/1024}')"; done
for i in 1 2 3; do curl -s localhost:1850$i/v1/status/digest; echo; done
$BIN bench put --nodes 127.0.0.1:18501,127.0.0.1:18502,127.0.0.1:18503 -c 16 -d 10s --keys 1000000 -q --baselines=false 2>&1 | grep -E "write|put" | head -3
for i in 1 2 3; do eval p=\$P$i; echo "after bench n$i $(grep -E '^(VmRSS|VmHWM|RssAnon|RssFile):' /proc/$p/status | awk '{printf "%s%d MiB ", $1, $2/1024}')"; done
if [ "$LIMIT" != 0 ]; then for i in 1 2 3; do echo "n$i cgroup max usage $(( $(cat /sys/fs/cgroup/memory/raftkv-mem-n$i/memory.max_usage_in_bytes)/1048576 )) MiB, failcnt $(cat /sys/fs/cgroup/memory/raftkv-mem-n$i/memory.failcnt)"; done; fi
kill $P1 $P2 $P3; wait
if [ "$LIMIT" != 0 ]; then for i in 1 2 3; do rmdir /sys/fs/cgroup/memory/raftkv-mem-n$i; done; fi
