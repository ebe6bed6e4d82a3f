#!/bin/sh
# Run by cluster/snapshot/volume_copy.rs in a throwaway container: `copy-volumes FROM TO [FROM TO …]`
# copies each pair at once with `cp -a` (ownership, modes, device nodes and extended attributes
# kept; runs of zeros become holes) and prints "bytes N" (the disk TO takes) for each TO, in
# order, once all have succeeded.
set -e
copy() {
  cd "$1"
  cp -a --sparse=always . "$2/"
  du -s -B1 "$2" | cut -f1
}
n=0; pids=
while [ $# -gt 0 ]; do
  copy "$1" "$2" > "/tmp/size.$n" &
  pids="$pids $!"; n=$((n + 1)); shift 2
done
failed=0
for pid in $pids; do wait "$pid" || failed=1; done
[ $failed = 0 ]
i=0
while [ $i -lt $n ]; do echo "bytes $(cat "/tmp/size.$i")"; i=$((i + 1)); done
