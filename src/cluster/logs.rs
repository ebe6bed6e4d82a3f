//! `berth export logs`: what someone debugging a cluster asks for, per node: the kubelet and
//! containerd journals, the whole journal, the container's console log, /kind/version, the pod
//! logs under /var/log/pods (kube-system among them), and Docker's inspect output. The logs
//! hold cluster material, so what this writes is the user's alone: directories 0700, files 0600.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use super::{nodes, ClusterError, Result};
use crate::runtime::Docker;

/// Writes the logs of every node of `cluster` under `dir/<node>/`; returns the files written.
pub async fn export(docker: &Docker, cluster: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let nodes = nodes(docker, cluster).await?;
    let mut written = Vec::new();
    for node in nodes {
        let node_dir = dir.join(&node.name);
        private_dir(&node_dir)?;
        let inspect = docker.inspect(&node.name).await?;
        written.push(write(&node_dir.join("inspect.json"), serde_json::to_string_pretty(&inspect).unwrap_or_default().as_bytes())?);
        written.push(write(&node_dir.join("serial.log"), docker.logs_tail(&node.name, 100_000).await?.as_bytes())?);
        // The load balancer has no journal or pod logs (kind's haproxy image has no shell):
        // its inspect output and console log are all there is.
        if node.state != "running" || !node.is_kubernetes_node() {
            continue;
        }
        let files: [(&str, &[&str]); 4] = [
            ("kubelet.log", &["journalctl", "--no-pager", "-u", "kubelet"]),
            ("containerd.log", &["journalctl", "--no-pager", "-u", "containerd"]),
            ("journal.log", &["journalctl", "--no-pager"]),
            ("kubernetes-version.txt", &["cat", "/kind/version"]),
        ];
        for (name, cmd) in files {
            let out = docker.exec(&node.name, cmd).await?;
            written.push(write(&node_dir.join(name), out.stdout.as_bytes())?);
        }
        written.extend(copy_pod_logs(docker, &node.name, &node_dir).await?);
    }
    Ok(written)
}

/// Where pod logs are gathered in the node: on the /var volume, because Docker's copy API reads
/// beneath tmpfs mounts such as /tmp and would not see them.
const STAGING: &str = "/var/lib/berth/pod-logs";

/// /var/log/pods holds symlinks to the containers' log files; the node copies them with the
/// links followed, and that copy is fetched as a tar stream.
async fn copy_pod_logs(docker: &Docker, node: &str, node_dir: &Path) -> Result<Vec<PathBuf>> {
    let gather = format!("rm -rf {STAGING} && mkdir -p {STAGING}/pods && cp -rL /var/log/pods/. {STAGING}/pods/ 2>/dev/null || true");
    docker.exec_ok(node, &["sh", "-c", &gather]).await?;
    let mut tar_bytes = Vec::new();
    let source = format!("{STAGING}/pods");
    let mut stream = docker.download_tar(node, &source);
    while let Some(chunk) = stream.next().await {
        tar_bytes.extend_from_slice(&chunk?);
    }
    docker.exec(node, &["rm", "-rf", STAGING]).await?;
    let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes));
    let mut written = Vec::new();
    for entry in archive.entries().map_err(|e| io_err(node_dir, e))? {
        let mut entry = entry.map_err(|e| io_err(node_dir, e))?;
        let rel = entry.path().map_err(|e| io_err(node_dir, e))?.into_owned();
        // Never write outside the node's directory, whatever the archive says.
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            continue;
        }
        let target = node_dir.join(&rel);
        if entry.header().entry_type().is_file() {
            if let Some(parent) = target.parent() {
                private_dir(parent)?;
            }
            entry.unpack(&target).map_err(|e| io_err(&target, e))?;
            set_mode(&target, 0o600)?;
            written.push(target);
        }
    }
    Ok(written)
}

fn write(path: &Path, contents: &[u8]) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(|e| io_err(path, e))?;
    file.write_all(contents).map_err(|e| io_err(path, e))?;
    // A file left by an earlier export keeps its old mode through open(): set it.
    set_mode(path, 0o600)?;
    Ok(path.to_path_buf())
}

/// Creates `dir` and any missing parents 0700. A directory that already existed is left as
/// it is unless berth made it (a node's or a pod's directory), which is set 0700.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_err(dir, e))?;
    set_mode(dir, 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, e: std::io::Error) -> ClusterError {
    ClusterError::Io { context: format!("writing {}", path.display()), source: e }
}
