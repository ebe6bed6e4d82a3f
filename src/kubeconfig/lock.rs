//! The kubeconfig lock: `<file>.lock`, created with O_EXCL and removed on drop — the same
//! file kubectl (client-go) creates, so the two exclude each other.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::KubeconfigError;

pub struct FileLock {
    path: PathBuf,
}

/// `<target>.lock`, as client-go names it.
pub fn lock_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl FileLock {
    /// Takes the lock for `target`, retrying with backoff until `wait` has passed.
    pub fn acquire(target: &Path, wait: Duration) -> Result<FileLock, KubeconfigError> {
        let path = lock_path(target);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KubeconfigError::Write { path: target.into(), source })?;
        }
        let deadline = Instant::now() + wait;
        let mut delay = Duration::from_millis(2);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(FileLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        return Err(KubeconfigError::Locked { path: target.into(), lock: path });
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
                Err(source) => return Err(KubeconfigError::Write { path: target.into(), source }),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
