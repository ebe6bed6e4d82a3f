//! Privileged or capability-mode nodes: which one this Docker daemon allows.
//!
//! Most machines let a container run `--privileged`, which is what kind assumes. Some sandboxes
//! do not (their bounding set lacks a capability such as CAP_SYS_RESOURCE, and runc refuses
//! to start any privileged container). There a node still works with every capability the
//! sandbox has, unconfined seccomp/AppArmor, writable /sys and all devices. berth probes once
//! per create and decides by the table in [`decide_mode`].

use std::fmt;

/// Marks the throwaway privileged probe containers (named `berth-probe-PID-…`).
pub const LABEL_PROBE: &str = "dev.berth.probe";
/// A probe lives a second or two; one older than this whose process is gone was orphaned.
const PROBE_ORPHAN_AGE_SECS: i64 = 60;

/// Whether a probe container was left by a berth process that no longer exists (a create
/// killed with SIGKILL leaves one that no roll-back removes): its name's pid is not running
/// and it is older than any live probe (the age also spares probes of another host's berth
/// sharing a remote daemon, whose pids mean nothing here).
pub fn orphaned_probe(name: &str, created: Option<i64>, now: i64, pid_alive: impl Fn(u32) -> bool) -> bool {
    let Some(pid) = name.trim_start_matches('/').strip_prefix("berth-probe-").and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
    else {
        return false;
    };
    let old = created.is_none_or(|c| now - c > PROBE_ORPHAN_AGE_SECS);
    old && !pid_alive(pid)
}

/// Removes the probe containers of berth processes that no longer exist.
pub async fn sweep_orphaned_probes(runtime: &dyn super::Runtime) -> Result<usize, super::RuntimeError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let mut removed = 0;
    for c in runtime.list_containers(LABEL_PROBE).await? {
        if orphaned_probe(&c.name, c.created, now, alive) {
            tracing::info!("removing {}, a probe container left by a berth process that is gone", c.name);
            runtime.remove_container(&c.name).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// How node containers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// `--privileged`: what kind does, and what real users' daemons allow.
    Privileged,
    /// All capabilities but those the daemon cannot grant, plus the security options that make
    /// systemd, containerd and the kubelet work.
    Capabilities,
}

impl fmt::Display for NodeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeMode::Privileged => "privileged",
            NodeMode::Capabilities => "capabilities",
        })
    }
}

/// What the user asked for, from `BERTH_NODE_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeRequest {
    Auto,
    Privileged,
    Capabilities,
}

/// Why no node mode could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error("{0:?} is not a node mode (--node-mode, BERTH_NODE_MODE); use auto, privileged or capabilities")]
    Unknown(String),
    #[error(
        "BERTH_NODE_MODE=privileged, but this Docker daemon cannot start privileged containers ({0}); unset it to let berth use capability mode"
    )]
    PrivilegedRefused(String),
    /// The probe failed for a reason that says nothing about privilege (a missing image, say).
    #[error("could not test whether privileged containers work here: {0}")]
    ProbeFailed(String),
    #[error("internal: a privileged probe is needed for this mode request")]
    ProbeMissing,
}

impl ModeRequest {
    pub fn parse(value: Option<&str>) -> Result<ModeRequest, ModeError> {
        match value.map(str::trim) {
            None | Some("") | Some("auto") => Ok(ModeRequest::Auto),
            Some("privileged") => Ok(ModeRequest::Privileged),
            Some("capabilities") | Some("unprivileged") => Ok(ModeRequest::Capabilities),
            Some(other) => Err(ModeError::Unknown(other.to_string())),
        }
    }

    /// Whether deciding needs a privileged probe container at all.
    pub fn needs_probe(self) -> bool {
        self != ModeRequest::Capabilities
    }
}

/// What happened when a privileged container was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Started,
    /// The runtime refused the capabilities `--privileged` implies.
    CapabilitiesDenied(String),
    /// Anything else (missing image, daemon error): not evidence about privilege.
    Failed(String),
}

impl ProbeOutcome {
    /// Classifies a start error. runc says "unable to apply caps: operation not permitted" when
    /// the bounding set lacks a capability that --privileged requests.
    pub fn from_start_error(message: &str) -> ProbeOutcome {
        let m = message.to_ascii_lowercase();
        if m.contains("apply caps") || (m.contains("capabilit") && m.contains("not permitted")) {
            ProbeOutcome::CapabilitiesDenied(message.to_string())
        } else {
            ProbeOutcome::Failed(message.to_string())
        }
    }
}

/// The decision table. `probe` is None only when the request needs no probe.
pub fn decide_mode(request: ModeRequest, probe: Option<&ProbeOutcome>) -> Result<NodeMode, ModeError> {
    use ProbeOutcome::*;
    match (request, probe) {
        (ModeRequest::Capabilities, _) => Ok(NodeMode::Capabilities),
        (ModeRequest::Auto, Some(Started)) | (ModeRequest::Privileged, Some(Started)) => Ok(NodeMode::Privileged),
        (ModeRequest::Auto, Some(CapabilitiesDenied(_))) => Ok(NodeMode::Capabilities),
        (ModeRequest::Privileged, Some(CapabilitiesDenied(msg))) => Err(ModeError::PrivilegedRefused(msg.clone())),
        (_, Some(Failed(msg))) => Err(ModeError::ProbeFailed(msg.clone())),
        (_, None) => Err(ModeError::ProbeMissing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_probes_are_old_and_their_process_is_gone() {
        let now = 1_000_000;
        let alive = |pid: u32| pid == 42;
        assert!(orphaned_probe("/berth-probe-7-9f2c01ab", Some(now - 3600), now, alive));
        assert!(!orphaned_probe("/berth-probe-42-9f2c01ab", Some(now - 3600), now, alive), "its process still runs");
        assert!(!orphaned_probe("/berth-probe-7-9f2c01ab", Some(now - 5), now, alive), "young: maybe another host's");
        assert!(!orphaned_probe("/some-container", Some(0), now, alive), "not a probe");
        assert!(orphaned_probe("berth-probe-7-x", None, now, alive), "no creation time: the pid decides");
    }

    #[test]
    fn decision_table() {
        let denied = ProbeOutcome::CapabilitiesDenied("unable to apply caps".into());
        let failed = ProbeOutcome::Failed("No such image".into());
        let started = ProbeOutcome::Started;
        let refused = ModeError::PrivilegedRefused("unable to apply caps".into());
        let probe_failed = ModeError::ProbeFailed("No such image".into());
        let table: &[(ModeRequest, Option<&ProbeOutcome>, Result<NodeMode, ModeError>)] = &[
            (ModeRequest::Auto, Some(&started), Ok(NodeMode::Privileged)),
            (ModeRequest::Auto, Some(&denied), Ok(NodeMode::Capabilities)),
            (ModeRequest::Auto, Some(&failed), Err(probe_failed.clone())),
            (ModeRequest::Auto, None, Err(ModeError::ProbeMissing)),
            (ModeRequest::Privileged, Some(&started), Ok(NodeMode::Privileged)),
            (ModeRequest::Privileged, Some(&denied), Err(refused)),
            (ModeRequest::Privileged, Some(&failed), Err(probe_failed)),
            (ModeRequest::Capabilities, None, Ok(NodeMode::Capabilities)),
            (ModeRequest::Capabilities, Some(&started), Ok(NodeMode::Capabilities)),
        ];
        for (request, probe, want) in table {
            assert_eq!(&decide_mode(*request, *probe), want, "request {request:?}, probe {probe:?}");
        }
    }

    #[test]
    fn classifies_runc_capability_errors() {
        let runc = "OCI runtime create failed: runc create failed: unable to start container process: unable to apply caps: operation not permitted: unknown";
        assert!(matches!(ProbeOutcome::from_start_error(runc), ProbeOutcome::CapabilitiesDenied(_)));
        assert!(matches!(ProbeOutcome::from_start_error("No such image: x"), ProbeOutcome::Failed(_)));
    }

    #[test]
    fn parses_requests() {
        assert_eq!(ModeRequest::parse(None), Ok(ModeRequest::Auto));
        assert_eq!(ModeRequest::parse(Some("privileged")), Ok(ModeRequest::Privileged));
        assert_eq!(ModeRequest::parse(Some("capabilities")), Ok(ModeRequest::Capabilities));
        assert_eq!(ModeRequest::parse(Some("root")), Err(ModeError::Unknown("root".into())));
        assert!(!ModeRequest::Capabilities.needs_probe());
    }
}
