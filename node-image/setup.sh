#!/bin/sh
# Runs once inside the build container, after berth copied the files in: turns a Debian rootfs
# with systemd into a node image. Arguments: the Kubernetes version (e.g. v1.20.2).
set -eu
version=$1
# systemd generates a fresh machine-id at first boot when the file is empty: every node differs.
: > /etc/machine-id
# udev, gettys and kernel-module loading have nothing to do in a container and fail there.
rm -f /lib/systemd/system/sockets.target.wants/*udev* /lib/systemd/system/sysinit.target.wants/systemd-udev*
systemctl mask systemd-udevd.service systemd-udev-trigger.service getty@tty1.service console-getty.service \
  systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount >/dev/null 2>&1
systemctl enable containerd.service kubelet.service >/dev/null 2>&1
# A base image may carry services meant for other images built from it (haproxy for the load
# balancer); in a node they would only compete for ports.
systemctl disable haproxy.service >/dev/null 2>&1 || true
mkdir -p /kind/manifests /etc/kubernetes/manifests /var/lib/kubelet /etc/cni/net.d /etc/containerd/certs.d /opt/cni/bin
# Debian ships the CNI plugins in /usr/lib/cni; the kubelet and containerd look in /opt/cni/bin.
if [ -d /usr/lib/cni ]; then
  for p in /usr/lib/cni/*; do [ -e "/opt/cni/bin/$(basename "$p")" ] || cp -a "$p" /opt/cni/bin/; done
fi
chmod 0755 /usr/local/bin/entrypoint /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
echo "$version" > /kind/version
