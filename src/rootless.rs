//! What a rootless engine (rootless Docker, rootless Podman) needs of this host before a node
//! can run, checked before anything is made: cgroup v2 with the cpu, memory and pids controllers
//! delegated to the user, the ip6_tables / iptable_nat kernel modules the nodes' kube-proxy and
//! CNI need (a user namespace cannot load them), and subordinate ID ranges for the user (a node
//! maps root and the system users of its image). kind documents the same list; it checks only
//! part of it and then fails inside a node. Each unmet need is one line naming its fix.

use std::path::{Path, PathBuf};

/// Reads a host file (None when it cannot be read).
pub type ReadFile = Box<dyn Fn(&Path) -> Option<String>>;

/// The host as the checks read it: injectable, so the rules are unit-tested.
pub struct Host {
    pub read: ReadFile,
    pub exists: Box<dyn Fn(&Path) -> bool>,
    pub uid: u32,
    /// The user's login name, as /etc/subuid names it (a range may name the UID instead).
    pub user: Option<String>,
}

impl Host {
    pub fn current() -> Host {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
        Host { read: Box::new(|p: &Path| std::fs::read_to_string(p).ok()), exists: Box::new(|p: &Path| p.exists()), uid, user }
    }
}

/// Controllers a node's kubelet needs to limit pods; kind's rootless provider checks these.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// Kernel modules the nodes' iptables rules need; loaded on the host, as no user namespace may.
const MODULES: [&str; 4] = ["ip_tables", "ip6_tables", "iptable_nat", "ip6table_nat"];

/// Every unmet prerequisite, one line each, naming the fix; empty when the host is ready.
pub fn unmet(host: &Host) -> Vec<String> {
    let mut problems = Vec::new();
    let cgroup2 = (host.exists)(Path::new("/sys/fs/cgroup/cgroup.controllers"));
    if !cgroup2 {
        problems.push(
            "rootless nodes need cgroup v2, and this host runs cgroup v1: boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line"
                .to_string(),
        );
    } else {
        let missing = missing_controllers(host);
        if !missing.is_empty() {
            problems.push(format!(
                "the {} cgroup controller(s) are not delegated to user {}: add `[Service]` `Delegate=yes` in /etc/systemd/system/user@.service.d/delegate.conf, run `sudo systemctl daemon-reload`, then log in again",
                missing.join(", "),
                host.uid
            ));
        }
    }
    let modules: Vec<&str> = MODULES.iter().copied().filter(|m| !module_loaded(host, m)).collect();
    if !modules.is_empty() {
        problems.push(format!(
            "kernel module(s) {} not loaded, and a rootless engine cannot load them: `sudo modprobe {}` (list them in /etc/modules-load.d/berth.conf to keep them)",
            modules.join(", "),
            modules.join(" ")
        ));
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        if !has_range(host, Path::new(file)) {
            let who = host.user.clone().unwrap_or_else(|| host.uid.to_string());
            problems.push(format!(
                "{file} gives user {who} no subordinate ID range, which a node's users map into: `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who}`"
            ));
        }
    }
    problems
}

/// Controllers the user's systemd instance may hand on (its cgroup's `cgroup.controllers`).
fn missing_controllers(host: &Host) -> Vec<&'static str> {
    let uid = host.uid;
    let path = PathBuf::from(format!("/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"));
    let delegated = (host.read)(&path).unwrap_or_default();
    CONTROLLERS.iter().copied().filter(|c| !delegated.split_whitespace().any(|d| d == *c)).collect()
}

/// Loaded as a module (/proc/modules), or built into the kernel: /sys/module/NAME (only for
/// built-ins with parameters or a version) or the kernel's own list, modules.builtin.
fn module_loaded(host: &Host, name: &str) -> bool {
    let listed = (host.read)(Path::new("/proc/modules")).is_some_and(|m| m.lines().any(|l| l.split_whitespace().next() == Some(name)));
    let release = (host.read)(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default();
    let builtin_list = PathBuf::from(format!("/lib/modules/{}/modules.builtin", release.trim()));
    let file = format!("/{name}.ko");
    let builtin = (host.read)(&builtin_list).is_some_and(|m| m.lines().any(|l| l.trim().ends_with(&file)));
    listed || builtin || (host.exists)(&Path::new("/sys/module").join(name))
}

/// A `NAME:start:count` line for the user (by name or UID) with a count above zero.
fn has_range(host: &Host, file: &Path) -> bool {
    let uid = host.uid.to_string();
    (host.read)(file).is_some_and(|text| {
        text.lines().any(|line| {
            let mut f = line.trim().split(':');
            let (who, _start, count) = (f.next().unwrap_or_default(), f.next(), f.next().and_then(|c| c.trim().parse::<u64>().ok()));
            (Some(who) == host.user.as_deref() || who == uid) && count.is_some_and(|c| c > 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A host with these files (path → content); every other path is absent.
    fn host(files: &[(&str, &str)], uid: u32, user: Option<&str>) -> Host {
        let files: BTreeMap<PathBuf, String> = files.iter().map(|(p, c)| (PathBuf::from(p), c.to_string())).collect();
        let for_exists = files.clone();
        Host {
            read: Box::new(move |p| files.get(p).cloned()),
            exists: Box::new(move |p| for_exists.contains_key(p)),
            uid,
            user: user.map(str::to_string),
        }
    }

    fn ready(uid: u32) -> Vec<(String, String)> {
        vec![
            ("/sys/fs/cgroup/cgroup.controllers".into(), "cpuset cpu io memory hugetlb pids rdma misc".into()),
            (
                format!("/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"),
                "cpuset cpu io memory pids".into(),
            ),
            (
                "/proc/modules".into(),
                "ip6table_nat 12288 0 - Live 0x0\nip6_tables 32768 1 ip6table_nat, Live 0x0\niptable_nat 12288 1 - Live 0x0\n".into(),
            ),
            ("/sys/module/ip_tables".into(), String::new()),
            ("/etc/subuid".into(), "alice:100000:65536\n".into()),
            ("/etc/subgid".into(), format!("{uid}:100000:65536\n")),
        ]
    }

    fn with(files: &[(String, String)]) -> Vec<(&str, &str)> {
        files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect()
    }

    #[test]
    fn a_ready_host_has_nothing_unmet() {
        let files = ready(1000);
        assert_eq!(unmet(&host(&with(&files), 1000, Some("alice"))), Vec::<String>::new());
    }

    #[test]
    fn cgroup_v1_is_named_with_the_kernel_argument_that_fixes_it() {
        let files: Vec<(String, String)> = ready(1000).into_iter().filter(|(p, _)| !p.contains("cgroup")).collect();
        let problems = unmet(&host(&with(&files), 1000, Some("alice")));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("cgroup v1") && problems[0].contains("systemd.unified_cgroup_hierarchy=1"), "{problems:?}");
    }

    #[test]
    fn undelegated_controllers_are_named() {
        let mut files = ready(1000);
        files[1].1 = "memory pids".into();
        let problems = unmet(&host(&with(&files), 1000, Some("alice")));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("the cpu cgroup controller(s) are not delegated to user 1000"), "{problems:?}");
        assert!(problems[0].contains("Delegate=yes"), "{problems:?}");
        // No user@ cgroup at all (no systemd user session): every controller is missing.
        files.remove(1);
        let problems = unmet(&host(&with(&files), 1000, Some("alice")));
        assert!(problems[0].contains("cpu, memory, pids"), "{problems:?}");
    }

    #[test]
    fn missing_modules_are_named_in_one_modprobe() {
        let mut files = ready(1000);
        files[2].1 = "iptable_nat 12288 1 - Live 0x0\n".into();
        let problems = unmet(&host(&with(&files), 1000, Some("alice")));
        assert_eq!(problems, ["kernel module(s) ip6_tables, ip6table_nat not loaded, and a rootless engine cannot load them: `sudo modprobe ip6_tables ip6table_nat` (list them in /etc/modules-load.d/berth.conf to keep them)"]);
        // Built into this kernel, by its own list: nothing to load.
        files.push(("/proc/sys/kernel/osrelease".into(), "6.1.0-13-amd64\n".into()));
        files.push((
            "/lib/modules/6.1.0-13-amd64/modules.builtin".into(),
            "kernel/net/ipv6/netfilter/ip6_tables.ko\nkernel/net/ipv6/netfilter/ip6table_nat.ko\n".into(),
        ));
        assert_eq!(unmet(&host(&with(&files), 1000, Some("alice"))), Vec::<String>::new());
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid_and_must_not_be_empty() {
        let mut files = ready(1000);
        files[4].1 = "bob:100000:65536\nalice:200000:0\n".into();
        let problems = unmet(&host(&with(&files), 1000, Some("alice")));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("/etc/subuid gives user alice no subordinate ID range"), "{problems:?}");
        assert!(problems[0].contains("usermod --add-subuids"), "{problems:?}");
        // /etc/subgid names the UID: that counts.
        assert!(!problems.iter().any(|p| p.contains("/etc/subgid")), "{problems:?}");
    }
}
