//! `berth export logs`: what someone debugging a cluster asks for, per node: the kubelet and
//! containerd journals, the whole journal, the container's console log, /kind/version, the pod
//! logs under /var/log/pods (kube-system among them), and Docker's inspect output. The logs
//! hold cluster material, so what this writes is the user's alone: directories 0700, files 0600.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;

use super::{nodes, ClusterError, Operation, Result};
use crate::runtime::Runtime;

/// Writes the logs of every node of `cluster` under `dir/<node>/`; returns the files written.
/// A failure, or SIGINT, SIGTERM or SIGHUP, stops it and removes what it had written (files,
/// and directories it made), leaving `dir` as it found it.
pub async fn export(docker: &dyn Runtime, cluster: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    export_until(docker, cluster, dir, crate::interrupt::interrupted()).await
}

async fn export_until(
    docker: &dyn Runtime,
    cluster: &str,
    dir: &Path,
    interrupt: impl std::future::Future<Output = &'static str>,
) -> Result<Vec<PathBuf>> {
    tokio::pin!(interrupt);
    let mut made = Made::default();
    let outcome = Operation::ExportLogs.unless_interrupted(&mut interrupt, write_all(docker, cluster, dir, &mut made)).await;
    let undo = || async {
        made.remove();
        Ok(())
    };
    Operation::ExportLogs.finish(outcome, undo, "the log files it had written were removed").await?;
    Ok(made.files)
}

/// What an export has written so far: files, and the directories it made (not those it found).
#[derive(Default)]
struct Made {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Made {
    fn remove(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        // Deepest first; a directory that holds something else stays.
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// `dir` and its missing parents, 0700, each recorded as made.
    fn dir(&mut self, dir: &Path) -> Result<()> {
        let missing: Vec<PathBuf> = dir.ancestors().take_while(|d| std::fs::symlink_metadata(d).is_err()).map(Path::to_path_buf).collect();
        private_dir(dir)?;
        self.dirs.extend(missing.into_iter().rev());
        Ok(())
    }
}

async fn write_all(docker: &dyn Runtime, cluster: &str, dir: &Path, made: &mut Made) -> Result<()> {
    let nodes = nodes(docker, cluster).await?;
    for node in nodes {
        let node_dir = dir.join(&node.name);
        made.dir(&node_dir)?;
        let inspect = docker.inspect(&node.name).await?;
        made.files.push(write(&node_dir.join("inspect.json"), inspect.to_json_pretty().as_bytes())?);
        made.files.push(write(&node_dir.join("serial.log"), docker.logs_tail(&node.name, 100_000).await?.as_bytes())?);
        // The load balancer has no journal or pod logs (kind's haproxy image has no shell):
        // its inspect output and console log are all there is.
        if !node.state.is_running() || !node.is_kubernetes_node() {
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
            made.files.push(write(&node_dir.join(name), out.stdout.as_bytes())?);
        }
        copy_pod_logs(docker, &node.name, &node_dir, made).await?;
    }
    Ok(())
}

/// Where pod logs are gathered in the node: on the /var volume, because Docker's copy API reads
/// beneath tmpfs mounts such as /tmp and would not see them.
const STAGING: &str = "/var/lib/berth/pod-logs";

/// /var/log/pods holds symlinks to the containers' log files; the node copies them with the
/// links followed, and that copy is fetched as a tar stream.
async fn copy_pod_logs(docker: &dyn Runtime, node: &str, node_dir: &Path, made: &mut Made) -> Result<()> {
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
                made.dir(parent)?;
            }
            refuse_symlink(&target)?;
            entry.unpack(&target).map_err(|e| io_err(&target, e))?;
            made.files.push(target.clone());
            set_mode(&target, 0o600)?;
        }
    }
    Ok(())
}

fn write(path: &Path, contents: &[u8]) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    refuse_symlink(path)?;
    // O_NOFOLLOW: a link planted between the check and the open fails the open, not follows.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    file.write_all(contents).map_err(|e| io_err(path, e))?;
    // A file left by an earlier export keeps its old mode through open(): set it.
    set_mode(path, 0o600)?;
    Ok(path.to_path_buf())
}

/// Creates `dir` and any missing parents 0700. A directory that already existed is left as
/// it is unless berth made it (a node's or a pod's directory), which is set 0700.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    refuse_symlink(dir)?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_err(dir, e))?;
    set_mode(dir, 0o700)
}

/// Where berth writes a node's or a pod's logs, a symbolic link is someone else's doing (berth
/// makes none): following it would write, and chmod, a file outside the directory asked for.
fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(ClusterError::InvalidInput {
            field: path.display().to_string(),
            problem:
                "is a symbolic link berth did not make; export logs writes no file through one: remove it or choose an empty directory"
                    .into(),
        }),
        _ => Ok(()),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, e: std::io::Error) -> ClusterError {
    ClusterError::Io { context: format!("writing {}", path.display()), source: e }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::{LABEL_CLUSTER, LABEL_ROLE};

    /// A running two-node cluster "dev" whose control plane has one pod log to gather.
    fn cluster() -> FakeRuntime {
        let fake = FakeRuntime::healthy(&[]);
        fake.add_container("dev-control-plane", &[(LABEL_CLUSTER, "dev"), (LABEL_ROLE, "control-plane")]);
        fake.add_container("dev-worker", &[(LABEL_CLUSTER, "dev"), (LABEL_ROLE, "worker")]);
        fake.add_file("dev-control-plane", &format!("{STAGING}/pods/kube-system_etcd_1/etcd/0.log"), b"etcd says hi");
        fake.add_file("dev-worker", &format!("{STAGING}/pods/default_web_2/web/0.log"), b"web says hi");
        fake
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn never() -> impl std::future::Future<Output = &'static str> {
        std::future::pending()
    }

    #[tokio::test]
    async fn every_node_gets_its_journals_pod_logs_and_inspect_private_to_the_user() {
        let fake = cluster();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("logs");
        let files = export_until(&fake, "dev", &out, never()).await.unwrap();
        for node in ["dev-control-plane", "dev-worker"] {
            for f in ["inspect.json", "serial.log", "kubelet.log", "containerd.log", "journal.log", "kubernetes-version.txt"] {
                let path = out.join(node).join(f);
                assert!(files.contains(&path), "{path:?} not in {files:?}");
                assert_eq!(mode(&path), 0o600, "{path:?}");
            }
            assert_eq!(mode(&out.join(node)), 0o700);
        }
        let etcd = out.join("dev-control-plane/pods/kube-system_etcd_1/etcd/0.log");
        assert_eq!(std::fs::read_to_string(&etcd).unwrap(), "etcd says hi");
        assert_eq!(mode(&etcd), 0o600);
        assert_eq!(std::fs::read_to_string(out.join("dev-worker/kubernetes-version.txt")).unwrap(), "v1.20.2\n");
        let calls = fake.calls();
        assert!(calls.iter().any(|c| c == "exec dev-worker: journalctl --no-pager -u kubelet"), "{calls:?}");
    }

    /// A node that fails half-way (its pod logs cannot be fetched) fails the export, and what
    /// was written for the nodes before it goes with it.
    #[tokio::test]
    async fn a_failure_mid_way_leaves_nothing() {
        let fake = cluster();
        fake.remove_files("dev-worker");
        let dir = tempfile::tempdir().unwrap();
        let err = export_until(&fake, "dev", &dir.path().join("logs"), never()).await.unwrap_err();
        assert!(err.to_string().contains("dev-worker"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_interrupt_leaves_nothing_and_says_so() {
        let fake = cluster();
        let dir = tempfile::tempdir().unwrap();
        let err = export_until(&fake, "dev", &dir.path().join("logs"), async { "SIGINT" }).await.unwrap_err();
        assert!(
            matches!(err, ClusterError::Interrupted { operation: crate::cluster::Operation::ExportLogs, signal: "SIGINT", .. }),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_unknown_cluster_is_named() {
        let err = export_until(&cluster(), "prod", tempfile::tempdir().unwrap().path(), never()).await.unwrap_err();
        assert!(matches!(&err, ClusterError::NotFound(name) if name == "prod"), "{err}");
    }

    /// A link planted where a log goes (in a shared directory, by another user) is refused by
    /// name; its target is neither written nor chmodded.
    #[test]
    fn writes_no_log_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "theirs").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("kubelet.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write(&link, b"logs").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
        let node_dir = dir.path().join("node");
        std::os::unix::fs::symlink(dir.path(), &node_dir).unwrap();
        assert!(private_dir(&node_dir).unwrap_err().to_string().contains("symbolic link"));
        write(&dir.path().join("plain.log"), b"logs").unwrap();
    }

    /// What an interrupted export removes: the files it wrote and the directories it made, and
    /// nothing it found there (the user's own file, a directory that held something before).
    #[test]
    fn an_interrupted_export_removes_what_it_made_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs.txt");
        std::fs::write(&theirs, "keep").unwrap();
        let mut made = Made::default();
        let node_dir = dir.path().join("out/node-1");
        made.dir(&node_dir).unwrap();
        made.files.push(write(&node_dir.join("kubelet.log"), b"logs").unwrap());
        made.dir(&node_dir.join("pods/kube-system_x")).unwrap();
        made.files.push(write(&node_dir.join("pods/kube-system_x/0.log"), b"logs").unwrap());
        made.remove();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("theirs.txt")]);
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "keep");
    }
}
