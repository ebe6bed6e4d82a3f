//! The user's kubeconfig: merging a cluster's context in, taking it out, and reading it back.
//!
//! This module owns the file: which file (kubectl's rules: `--kubeconfig`; else of the
//! `$KUBECONFIG` list the first file that exists, or the last if none does; else
//! `~/.kube/config`), the lock (`<file>.lock`, created exclusively — the same convention
//! kubectl/client-go use, so berth and kubectl never write at once), and the write (a 0600 temp
//! file in the target's directory, fsynced, then renamed over it — through a symlink to the file
//! it points at, keeping the file's owner, and under `sudo` giving a new file to the invoking
//! user when it lands in that user's directory). Entries are handled as YAML values, so every
//! field berth does not know survives untouched. A file that cannot be read or parsed is never
//! overwritten.

mod lock;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};

pub use lock::FileLock;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("kubeconfig {path} is not valid YAML ({reason}); fix or move it, berth will not overwrite it")]
    NotYaml { path: PathBuf, reason: String },
    #[error("kubeconfig {path} is locked by another writer ({lock} exists); if no kubectl or berth is running, remove the lock file")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot write kubeconfig {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no home directory to put ~/.kube/config in; set KUBECONFIG or --kubeconfig")]
    NoHome,
    #[error("{0}")]
    Invalid(String),
}

type Result<T, E = KubeconfigError> = std::result::Result<T, E>;

/// How long to wait for another writer's lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The context (and cluster and user) name berth uses for a cluster.
pub fn context_name(cluster: &str) -> String {
    format!("berth-{cluster}")
}

/// The kubeconfig files kubectl would read: the explicit one, else `$KUBECONFIG`'s list (empty
/// entries and repeats dropped), else `~/.kube/config`.
pub fn paths(explicit: Option<&Path>) -> Result<Vec<PathBuf>> {
    paths_from(explicit, std::env::var_os("KUBECONFIG"))
}

fn paths_from(explicit: Option<&Path>, env: Option<std::ffi::OsString>) -> Result<Vec<PathBuf>> {
    if let Some(p) = explicit {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut list: Vec<PathBuf> = Vec::new();
    for p in env.as_deref().map(std::env::split_paths).into_iter().flatten() {
        if !p.as_os_str().is_empty() && !list.contains(&p) {
            list.push(p);
        }
    }
    if list.is_empty() {
        let home = directories::BaseDirs::new().ok_or(KubeconfigError::NoHome)?;
        list.push(home.home_dir().join(".kube").join("config"));
    }
    Ok(list)
}

/// The file new entries go to, as kubectl decides: of [`paths`], the first that exists as a
/// file, else the last.
pub fn default_path(explicit: Option<&Path>) -> Result<PathBuf> {
    Ok(path_for_merge(&paths(explicit)?))
}

fn path_for_merge(paths: &[PathBuf]) -> PathBuf {
    paths.iter().find(|p| p.is_file()).or(paths.last()).cloned().unwrap_or_default()
}

/// Fails at once, naming the lock file, if another writer holds `path`'s lock for longer than
/// any real write takes — checked before a create makes anything, so a lock left by a killed
/// process is found in a second, not after the cluster is built.
pub fn check_unlocked(path: &Path) -> Result<()> {
    let lock = lock::lock_path(path);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while lock.exists() {
        if std::time::Instant::now() >= deadline {
            return Err(KubeconfigError::Locked { path: path.into(), lock });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What of the node's cluster entry is copied: its CA and the name its certificate is for.
const CLUSTER_FIELDS: &[&str] = &["certificate-authority-data", "tls-server-name"];
/// What of the node's user entry is copied: kubeadm's client certificate and key, or a token. A
/// node (its image, a snapshot) may come from anyone; an `exec` or `auth-provider` entry would
/// have the user's kubectl run a command of the node's choosing on the host, and a file path or
/// proxy would point outside the node.
const USER_FIELDS: &[&str] = &["client-certificate-data", "client-key-data", "token"];

/// `body` with only the `fields` named.
fn only(body: Value, fields: &[&str]) -> Value {
    let Value::Mapping(m) = body else { return Value::Mapping(Mapping::new()) };
    Value::Mapping(m.into_iter().filter(|(k, _)| k.as_str().is_some_and(|k| fields.contains(&k))).collect())
}

/// Turns the admin kubeconfig kubeadm wrote into berth's entries: renames cluster, user and
/// context to `berth-NAME`, and points the server at `server`. Only credentials are copied from
/// the node (see [`USER_FIELDS`]).
pub fn for_cluster(admin_conf: &str, cluster: &str, server: &str) -> Result<Value> {
    let doc: Value =
        serde_yaml::from_str(admin_conf).map_err(|e| KubeconfigError::Invalid(format!("kubeadm's admin.conf is not YAML: {e}")))?;
    let name = context_name(cluster);
    let first = |key: &str, field: &str| -> Result<Value> {
        doc.get(key)
            .and_then(Value::as_sequence)
            .and_then(|s| s.first())
            .and_then(|e| e.get(field))
            .cloned()
            .ok_or_else(|| KubeconfigError::Invalid(format!("admin.conf has no {key}[0].{field}")))
    };
    let mut cluster_body = only(first("clusters", "cluster")?, CLUSTER_FIELDS);
    cluster_body["server"] = Value::from(server);
    let user_body = only(first("users", "user")?, USER_FIELDS);
    if user_body.as_mapping().is_none_or(|m| m.is_empty()) {
        return Err(KubeconfigError::Invalid(
            "admin.conf's user has no client certificate, key or token (berth does not copy exec or auth-provider plugins: kubectl would run them on this host)".into(),
        ));
    }
    let entry = |body_key: &str, body: Value| -> Value {
        let mut m = Mapping::new();
        m.insert("name".into(), name.clone().into());
        m.insert(body_key.into(), body);
        Value::Mapping(m)
    };
    let mut context = Mapping::new();
    context.insert("cluster".into(), name.clone().into());
    context.insert("user".into(), name.clone().into());
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), "v1".into());
    out.insert("kind".into(), "Config".into());
    out.insert("clusters".into(), Value::Sequence(vec![entry("cluster", cluster_body)]));
    out.insert("users".into(), Value::Sequence(vec![entry("user", user_body)]));
    out.insert("contexts".into(), Value::Sequence(vec![entry("context", Value::Mapping(context))]));
    out.insert("current-context".into(), name.into());
    out.insert("preferences".into(), Value::Mapping(Mapping::new()));
    Ok(Value::Mapping(out))
}

/// Merges `entries` (a kubeconfig with one cluster, user and context) into `existing`,
/// replacing same-named entries and making its context current.
pub fn merge(existing: &mut Value, entries: &Value) -> Result<()> {
    let map = ensure_config_mapping(existing)?;
    for key in ["clusters", "users", "contexts"] {
        let new_items = entries.get(key).and_then(Value::as_sequence).cloned().unwrap_or_default();
        let list = list_mut(map, key)?;
        for item in new_items {
            let name = item.get("name").cloned();
            list.retain(|e| e.get("name") != name.as_ref());
            list.push(item);
        }
    }
    if let Some(current) = entries.get("current-context") {
        map.insert("current-context".into(), current.clone());
    }
    Ok(())
}

/// Removes the cluster, user and context named `name`; unsets current-context if it was that.
/// Returns whether anything was removed.
pub fn remove(existing: &mut Value, name: &str) -> Result<bool> {
    let map = ensure_config_mapping(existing)?;
    let mut removed = false;
    for key in ["clusters", "users", "contexts"] {
        let list = list_mut(map, key)?;
        let before = list.len();
        list.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
        removed |= list.len() != before;
    }
    if map.get("current-context").and_then(Value::as_str) == Some(name) {
        map.insert("current-context".into(), "".into());
        removed = true;
    }
    Ok(removed)
}

/// Takes a merge back: removes `name`'s entries and, if `name` was current, makes current again
/// the context that was current before the merge (`previous`; none: the key goes).
pub fn unmerge(existing: &mut Value, name: &str, previous: Option<&str>) -> Result<bool> {
    let was_current = existing.get("current-context").and_then(Value::as_str) == Some(name);
    let removed = remove(existing, name)?;
    if was_current {
        let map = ensure_config_mapping(existing)?;
        match previous {
            Some(previous) => map.insert("current-context".into(), previous.into()),
            None => map.remove("current-context"),
        };
    }
    Ok(removed)
}

/// The file's current-context as written — an empty one too (`kubectl config delete-context`
/// and `berth delete` leave `current-context: ""`), so that putting it back after a roll-back
/// leaves the file exactly as it was.
pub fn current_context(path: &Path) -> Result<Option<String>> {
    Ok(read(path)?.get("current-context").and_then(Value::as_str).map(str::to_string))
}

fn ensure_config_mapping(doc: &mut Value) -> Result<&mut Mapping> {
    if doc.is_null() {
        let mut m = Mapping::new();
        m.insert("apiVersion".into(), "v1".into());
        m.insert("kind".into(), "Config".into());
        m.insert("preferences".into(), Value::Mapping(Mapping::new()));
        *doc = Value::Mapping(m);
    }
    doc.as_mapping_mut().ok_or_else(|| KubeconfigError::Invalid("the kubeconfig is not a YAML mapping".into()))
}

fn list_mut<'a>(map: &'a mut Mapping, key: &str) -> Result<&'a mut Vec<Value>> {
    let slot = map.entry(key.into()).or_insert(Value::Sequence(Vec::new()));
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    slot.as_sequence_mut().ok_or_else(|| KubeconfigError::Invalid(format!("`{key}` in the kubeconfig is not a list")))
}

/// Reads a kubeconfig file; a missing or empty file is an empty config.
pub fn read(path: &Path) -> Result<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Null),
        Err(source) => return Err(KubeconfigError::Read { path: path.into(), source }),
    };
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| KubeconfigError::NotYaml { path: path.into(), reason: e.to_string() })?;
    if !doc.is_mapping() {
        return Err(KubeconfigError::NotYaml { path: path.into(), reason: "the top level is not a mapping".into() });
    }
    Ok(doc)
}

/// The file a write must replace: `path`, or, through any symlinks, the file they point at
/// (replacing the link itself would cut it from the user's dotfiles).
fn write_target(path: &Path) -> PathBuf {
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&target) {
            Ok(link) => target = target.parent().unwrap_or(Path::new("/")).join(link),
            Err(_) => break,
        }
    }
    target
}

/// Who should own the written file: its current owner if it exists; a new file under `sudo`
/// whose directory belongs to the invoking user (`SUDO_UID`) goes to that user; else nobody
/// in particular (the writer).
fn owner_for(target: &Path, dir: &Path, sudo: Option<(u32, u32)>) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata(target) {
        return Some((meta.uid(), meta.gid()));
    }
    let (uid, gid) = sudo?;
    std::fs::metadata(dir).ok().filter(|m| m.uid() == uid).map(|_| (uid, gid))
}

/// `SUDO_UID`/`SUDO_GID` when berth runs as root under sudo.
fn sudo_user() -> Option<(u32, u32)> {
    let id = |k: &str| std::env::var(k).ok()?.parse::<u32>().ok();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root.then(|| Some((id("SUDO_UID")?, id("SUDO_GID")?))).flatten()
}

/// Writes atomically: a 0600 temp file beside the target, fsynced, given the target's owner,
/// renamed over it.
fn write(path: &Path, doc: &Value) -> Result<()> {
    write_as(path, doc, sudo_user())
}

fn write_as(path: &Path, doc: &Value, sudo: Option<(u32, u32)>) -> Result<()> {
    let text = serde_yaml::to_string(doc).map_err(|e| KubeconfigError::Invalid(e.to_string()))?;
    write_bytes_as(path, text.as_bytes(), sudo)
}

fn write_bytes_as(path: &Path, text: &[u8], sudo: Option<(u32, u32)>) -> Result<()> {
    use std::io::Write;
    let werr = |source| KubeconfigError::Write { path: path.into(), source };
    let target = write_target(path);
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    // A fresh ~/.kube made under sudo belongs to the user whose home it is in.
    let dir_owner = dir.parent().filter(|_| !dir.exists()).and_then(|parent| owner_for(&dir, parent, sudo));
    std::fs::create_dir_all(&dir).map_err(werr)?;
    if let Some((uid, gid)) = dir_owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(werr)?;
    }
    let mut tmp = tempfile::Builder::new().prefix(".berth-kubeconfig").tempfile_in(&dir).map_err(werr)?;
    // tempfile creates files 0600 already; say so explicitly since credentials live here.
    set_private(tmp.path()).map_err(werr)?;
    tmp.write_all(text).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    if let Some((uid, gid)) = owner_for(&target, &dir, sudo) {
        std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid)).map_err(werr)?;
    }
    tmp.persist(&target).map_err(|e| werr(e.error))?;
    Ok(())
}

fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Read-modify-write under the lock. `change` returns whether it changed anything; nothing is
/// written when it did not.
pub fn update(path: &Path, change: impl FnOnce(&mut Value) -> Result<bool>) -> Result<()> {
    update_within(path, LOCK_WAIT, change)
}

/// [`update`], waiting at most `wait` for another writer's lock.
fn update_within(path: &Path, wait: Duration, change: impl FnOnce(&mut Value) -> Result<bool>) -> Result<()> {
    let _lock = FileLock::acquire(path, wait)?;
    let mut doc = read(path)?;
    if change(&mut doc)? {
        write(path, &doc)?;
    }
    Ok(())
}

/// Merges a cluster's entries into the kubeconfig at `path`.
pub fn merge_into_file(path: &Path, entries: &Value) -> Result<()> {
    update(path, |doc| merge(doc, entries).map(|_| true))
}

/// A merge into the user's kubeconfig that a create or restore may have to take back — even
/// while it is being written: the write runs on a blocking thread, which an interrupt does not
/// stop, so the take-back either undoes a merge that landed or keeps one from landing. Clones
/// share the record.
#[derive(Debug, Clone, Default)]
pub struct MergeRecord(std::sync::Arc<std::sync::Mutex<MergeState>>);

#[derive(Debug, Default)]
enum MergeState {
    #[default]
    NotStarted,
    /// Taken back before it was written: it never will be.
    Cancelled,
    Done(Merged),
}

/// What one merge changed.
#[derive(Debug)]
struct Merged {
    /// The file's bytes and mode before the merge; None where there was no file.
    before: Option<(Vec<u8>, u32)>,
    /// The file as the merge left it.
    after: Vec<u8>,
    /// The context that was current before.
    previous_context: Option<String>,
}

impl MergeRecord {
    /// Merges `entries` into the kubeconfig at `path` (blocking), unless taken back already.
    pub fn merge(&self, path: &Path, entries: &Value) -> Result<()> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, MergeState::Cancelled) {
            return Ok(());
        }
        let _lock = FileLock::acquire(path, LOCK_WAIT)?;
        let before = read_bytes_and_mode(path)?;
        let mut doc = read(path)?;
        let previous_context = doc.get("current-context").and_then(Value::as_str).map(str::to_string);
        merge(&mut doc, entries)?;
        write(path, &doc)?;
        let after = std::fs::read(path).map_err(|source| KubeconfigError::Read { path: path.into(), source })?;
        *state = MergeState::Done(Merged { before, after, previous_context });
        Ok(())
    }

    /// Takes the merge back (blocking): the file exactly as it was (bytes and mode; no file if
    /// there was none) when no one has written it since; else only `cluster`'s entries go and
    /// the context that was current is current again. A merge not yet written never will be.
    pub fn take_back(&self, path: &Path, cluster: &str) -> Result<()> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let MergeState::Done(merged) = std::mem::replace(&mut *state, MergeState::Cancelled) else { return Ok(()) };
        let _lock = FileLock::acquire(path, LOCK_WAIT)?;
        let now = read_bytes_and_mode(path)?;
        if now.as_ref().map(|(bytes, _)| bytes) != Some(&merged.after) {
            let mut doc = read(path)?;
            if unmerge(&mut doc, &context_name(cluster), merged.previous_context.as_deref())? {
                write(path, &doc)?;
            }
            return Ok(());
        }
        let werr = |source| KubeconfigError::Write { path: path.into(), source };
        match merged.before {
            None => std::fs::remove_file(write_target(path)).map_err(werr),
            Some((bytes, mode)) => {
                write_bytes_as(path, &bytes, sudo_user())?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(write_target(path), std::fs::Permissions::from_mode(mode)).map_err(werr)
            }
        }
    }
}

/// A file's bytes and permission bits; None if it does not exist.
fn read_bytes_and_mode(path: &Path) -> Result<Option<(Vec<u8>, u32)>> {
    use std::os::unix::fs::PermissionsExt;
    let rerr = |source| KubeconfigError::Read { path: path.into(), source };
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some((bytes, std::fs::metadata(path).map_err(rerr)?.permissions().mode() & 0o7777))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(rerr(e)),
    }
}

/// Removes a cluster's entries from the kubeconfig at `path`; a missing file is fine.
pub fn remove_from_file(path: &Path, cluster: &str) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let mut removed = false;
    update(path, |doc| {
        removed = remove(doc, &context_name(cluster))?;
        Ok(removed)
    })?;
    Ok(removed)
}

#[cfg(test)]
mod tests;
