//! Where the seconds of a `start` go, read from each node's own journal: when systemd started
//! containerd and the kubelet, when the kubelet was up, and when each static pod's container
//! started — as seconds since the command began, shown at `-v`.

use crate::runtime::Runtime;

/// One moment in a node's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Milestone {
    pub what: String,
    /// Seconds since the command began.
    pub at: f64,
}

/// The milestones in `journal` (`journalctl -o short-unix` of the containerd and kubelet
/// units), relative to `t0` (Unix seconds).
pub fn parse(journal: &str, t0: f64) -> Vec<Milestone> {
    let mut out = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new(); // container id → name
    for line in journal.lines() {
        let Some((stamp, rest)) = line.split_once(' ') else { continue };
        let Ok(at) = stamp.parse::<f64>() else { continue };
        let at = ((at - t0) * 10.0).round() / 10.0;
        let mut mark = |what: String| {
            if !out.iter().any(|m: &Milestone| m.what == what) {
                out.push(Milestone { what, at });
            }
        };
        if rest.contains("Started containerd.service") {
            mark("containerd".into());
        } else if rest.contains("Started kubelet.service") {
            mark("kubelet process".into());
        } else if rest.contains("] Started kubelet") || rest.contains("] \"Started kubelet\"") {
            // Unstructured (1.20) and structured (current) kubelet logs.
            mark("kubelet ready".into());
        } else if let Some(name) = between(rest, "ContainerMetadata{Name:", ",").or_else(|| between(rest, "for name:\\\"", "\\\"")) {
            // containerd 1.x names the container in a Go struct, 2.x as `name:"..."`.
            if let Some(id) = between(rest, "returns container id \\\"", "\\\"") {
                names.push((id.to_string(), name.to_string()));
            }
        } else if let Some(id) = between(rest, "StartContainer for \\\"", "\\\" returns successfully") {
            if let Some((_, name)) = names.iter().find(|(i, _)| i == id) {
                mark(name.clone());
            }
        }
    }
    out
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// `node`'s milestones since `t0` (Unix seconds); empty if its journal cannot be read.
pub async fn of_node(docker: &dyn Runtime, node: &str, t0: f64) -> Vec<Milestone> {
    let since = format!("@{}", t0.floor() as i64);
    let cmd = ["journalctl", "-o", "short-unix", "--no-pager", "--since", &since, "-u", "containerd", "-u", "kubelet"];
    match docker.exec(node, &cmd).await {
        Ok(out) => parse(&out.stdout, t0),
        Err(_) => Vec::new(),
    }
}

/// At `-v`: where the seconds of a `what` (start, restore) that began at `since` went, node by
/// node from their journals.
pub async fn log_nodes<'a>(docker: &dyn Runtime, what: &str, nodes: impl IntoIterator<Item = &'a str>, since: std::time::SystemTime) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let t0 = since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
    for node in nodes {
        let milestones = of_node(docker, node, t0).await;
        tracing::info!("{what} of {node}: {}", describe(&milestones));
    }
}

/// "containerd 0.6 s, kubelet process 0.6 s, …"
pub fn describe(milestones: &[Milestone]) -> String {
    milestones.iter().map(|m| format!("{} {:.1} s", m.what, m.at)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_milestones_of_a_start_from_the_journal() {
        let journal = r#"1000.90 n systemd[1]: Started containerd.service - containerd container runtime.
1000.93 n systemd[1]: Started kubelet.service - kubelet: The Kubernetes Node Agent.
1006.62 n kubelet[112]: I1128 17:55:28.822570     112 server.go:1176] Started kubelet
1007.10 n containerd[99]: time="x" level=info msg="CreateContainer within sandbox \"685e\" for &ContainerMetadata{Name:kube-apiserver,Attempt:1,} returns container id \"89d1\""
1007.20 n containerd[99]: time="x" level=info msg="CreateContainer within sandbox \"3b2a\" for &ContainerMetadata{Name:etcd,Attempt:1,} returns container id \"e052\""
1007.31 n containerd[99]: time="x" level=info msg="StartContainer for \"e052\" returns successfully"
1007.44 n containerd[99]: time="x" level=info msg="StartContainer for \"89d1\" returns successfully"
1008.00 n systemd[1]: Started kubelet.service - kubelet: The Kubernetes Node Agent.
"#;
        let m = parse(journal, 1000.4);
        assert_eq!(describe(&m), "containerd 0.5 s, kubelet process 0.5 s, kubelet ready 6.2 s, etcd 6.9 s, kube-apiserver 7.0 s");
    }

    #[test]
    fn reads_current_kubelets_and_containerd_2() {
        let journal = r#"1000.71 n systemd[1]: Started containerd.service - containerd container runtime.
1000.73 n systemd[1]: Started kubelet.service - kubelet: The Kubernetes Node Agent.
1001.00 n kubelet[197]: I1203 07:12:32.003912     197 server.go:1336] "Started kubelet"
1001.20 n containerd[193]: time="x" level=info msg="CreateContainer within sandbox \"1310\" for name:\"etcd\" returns container id \"36f3\""
1001.30 n containerd[193]: time="x" level=info msg="CreateContainer within sandbox \"43b7\" for container name:\"kube-apiserver\""
1001.40 n containerd[193]: time="x" level=info msg="CreateContainer within sandbox \"43b7\" for name:\"kube-apiserver\" returns container id \"8a1c\""
1001.80 n containerd[193]: time="x" level=info msg="StartContainer for \"36f3\" returns successfully"
1001.90 n containerd[193]: time="x" level=info msg="StartContainer for \"8a1c\" returns successfully"
"#;
        let m = parse(journal, 1000.0);
        assert_eq!(describe(&m), "containerd 0.7 s, kubelet process 0.7 s, kubelet ready 1.0 s, etcd 1.8 s, kube-apiserver 1.9 s");
    }
}
