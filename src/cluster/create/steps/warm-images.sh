#!/bin/sh
# Run in a node (sh -c): unpacks the images every node's kubelet starts first (the sandbox,
# kube-proxy, the pod network's agent) by mounting each once, so their first pods do not wait.
sandbox=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' /etc/containerd/config.toml)
proxy=$(ctr -n k8s.io images ls -q | grep '/kube-proxy:' | head -n 1)
network=$(sed -n 's/^ *image: *//p' /kind/manifests/default-cni.yaml 2>/dev/null | tr -d '"' | sort -u)
target=/run/berth-warm
mkdir -p "$target"
for ref in $sandbox $proxy $network; do
  if ctr -n k8s.io images mount "$ref" "$target" >/dev/null; then
    ctr -n k8s.io images unmount --rm "$target" >/dev/null
  fi
done
