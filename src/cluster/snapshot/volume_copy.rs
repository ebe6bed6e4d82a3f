//! Copies of node volumes: a snapshot's saved /var from a node's, and a restored node's /var
//! from a snapshot's. Every file is copied — the two volumes share no inode, so nothing written
//! to one (a restored node's etcd, a privileged pod) can change the other — in one throwaway
//! container from a node image (which has `sh`, `cp` and `du`), running `copy-volumes.sh`.

use crate::cluster::{ClusterError, Result};
use crate::runtime::{volume_script_body, Runtime, VolumeScriptSpec};

/// `copy-volumes FROM TO …`, shell-checked with the repository's other scripts.
const COPY_SCRIPT: &str = include_str!("copy-volumes.sh");

/// One volume copy: the contents of `from` into the empty volume `to`.
pub struct VolumeCopy<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

/// Copies every pair at once in one container from `image` carrying `labels` (so a caller
/// interrupted mid-copy can sweep it up); returns the bytes of disk each `to` takes, in order.
/// The helper container is removed whatever happened.
pub async fn copy_volumes(runtime: &dyn Runtime, image: &str, copies: &[VolumeCopy<'_>], labels: &[(String, String)]) -> Result<Vec<u64>> {
    let pairs: Vec<(&str, &str)> = copies.iter().map(|c| (c.from, c.to)).collect();
    let body = volume_script_body(&VolumeScriptSpec { image, script: COPY_SCRIPT, pairs: &pairs, labels });
    let name = crate::ids::unique("berth-copy");
    let what = copies.iter().map(|c| format!("{} to {}", c.from, c.to)).collect::<Vec<_>>().join(", ");
    runtime.create_container(&name, body).await?;
    let outcome = async {
        runtime.start_container(&name).await?;
        let code = runtime.wait_exit(&name).await?;
        // A line per copy, after whatever cp said.
        let log = runtime.logs_tail(&name, copies.len() + 20).await.unwrap_or_default();
        if code != 0 {
            return Err(ClusterError::VolumeCopy { what: what.clone(), detail: format!("exit code {code}:\n{}", log.trim_end()) });
        }
        sizes(&log, copies.len()).ok_or_else(|| ClusterError::VolumeCopy { what: what.clone(), detail: format!("no sizes in {log:?}") })
    }
    .await;
    runtime.remove_container(&name).await?;
    outcome
}

/// The "bytes N" lines the script prints last, if there is one per copy.
fn sizes(log: &str, copies: usize) -> Option<Vec<u64>> {
    let sizes: Vec<u64> = log.lines().filter_map(|l| l.trim().strip_prefix("bytes ")?.parse().ok()).collect();
    (sizes.len() == copies).then_some(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[test]
    fn sizes_are_read_one_per_copy() {
        assert_eq!(sizes("cp: warning\nbytes 4096\nbytes 12\n", 2), Some(vec![4096, 12]));
        assert_eq!(sizes("bytes 4096\n", 2), None);
    }

    #[tokio::test]
    async fn a_failed_copy_says_which_and_leaves_no_helper() {
        let fake = FakeRuntime::with_images(&["node:1"]);
        fake.exit_with(1, "cp: cannot stat: No such file or directory");
        let err = copy_volumes(&fake, "node:1", &[VolumeCopy { from: "a", to: "b" }], &[]).await.unwrap_err();
        assert!(err.to_string().contains("a to b") && err.to_string().contains("cannot stat"), "{err}");
        assert!(fake.containers().is_empty(), "{:?}", fake.containers());
    }

    #[tokio::test]
    async fn a_copy_returns_the_sizes_and_removes_its_helper() {
        let fake = FakeRuntime::with_images(&["node:1"]);
        fake.exit_with(0, "bytes 10\nbytes 20\n");
        let copies = [VolumeCopy { from: "a", to: "b" }, VolumeCopy { from: "c", to: "d" }];
        assert_eq!(copy_volumes(&fake, "node:1", &copies, &[]).await.unwrap(), vec![10, 20]);
        assert!(fake.containers().is_empty());
        let calls = fake.calls();
        assert!(
            calls.iter().any(|c| c.starts_with("create berth-copy")) && calls.iter().any(|c| c.starts_with("remove berth-copy")),
            "{calls:?}"
        );
    }
}
