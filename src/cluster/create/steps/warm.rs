//! Runs beside `kubeadm init`: on every node that will join, unpacks the images each node
//! runs (the pod sandbox, kube-proxy, the default pod network's agent) while those nodes would
//! otherwise sit idle. Node images ship these images packed (containerd cannot unpack onto the
//! image build's filesystem), so without this a joining node unpacks them only when its first
//! pods start, after it has joined, and its kube-proxy comes up seconds later. Best effort:
//! a failure here only means the kubelet unpacks on first use, as it would anyway.

use futures_util::future::join_all;

use crate::runtime::Runtime;

/// The images every node runs, named as the node's containerd names them, each unpacked by
/// mounting it once and dropping the mount (the unpacked layers stay for the kubelet).
const WARM_SCRIPT: &str = include_str!("warm-images.sh");

pub async fn unpack_common_images(docker: &dyn Runtime, nodes: &[String]) {
    let runs = nodes.iter().map(|node| async move {
        let started = std::time::Instant::now();
        match docker.exec(node, &["sh", "-c", WARM_SCRIPT]).await {
            Ok(out) if out.code == 0 => tracing::debug!("{node}: common images unpacked in {:.1?}", started.elapsed()),
            Ok(out) => tracing::debug!("{node}: unpacking common images failed (the kubelet will): {}", out.tail(5)),
            Err(e) => tracing::debug!("{node}: unpacking common images failed (the kubelet will): {e}"),
        }
    });
    join_all(runs).await;
}
