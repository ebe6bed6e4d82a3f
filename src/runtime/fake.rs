//! An in-memory [`Runtime`] for unit tests: containers are entries in a map (name, labels,
//! address, files written), execs answer from a small script of what a healthy node says (a
//! command outside it is an error), and
//! every call is recorded, so a test can check what a create made, in what order, and that
//! roll-back removed it — in milliseconds, with no Docker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::models::ContainerInspectResponse;

use super::model::{ContainerBody, ContainerDetails, ContainerSummary, Credentials, HostConfig, ImageConfig, ImageSummary, PullProgress};

use super::{ExecOutput, ProbeOutcome, Runtime, RuntimeError};
use crate::config::Cidr;

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Default)]
pub struct FakeContainer {
    pub labels: HashMap<String, String>,
    pub ip: Option<String>,
    /// The network it is on (by its create request), if any but the engine's own.
    pub network: Option<String>,
    pub running: bool,
    pub files: BTreeMap<String, Vec<u8>>,
    pub image: String,
    /// The volume at /var: named by the create request, or anonymous (removed with the container).
    pub var: Option<String>,
    pub anonymous_var: bool,
    pub host_config: Option<bollard::models::HostConfig>,
    /// For a volume-copy helper: how many volumes it writes.
    pub copies: usize,
}

#[derive(Debug, Default)]
struct State {
    images: BTreeSet<String>,
    containers: BTreeMap<String, FakeContainer>,
    networks: BTreeSet<String>,
    /// Named volumes and their labels.
    volumes: BTreeMap<String, HashMap<String, String>>,
    /// Every call that changes something or runs a command, in order: "create NAME",
    /// "start NAME", "remove NAME", "exec NAME: CMD", and "exited NAME: CMD" when a kubeadm
    /// command returns (so a test sees which ran at the same time).
    calls: Vec<String>,
    /// A container to appear one listing after the first removal, carrying the removed one's
    /// labels: a create request that was still in flight when roll-back began.
    ghost_after_first_removal: bool,
    /// Every removal lands another ghost: a create loop nothing stops.
    ghosts_keep_landing: bool,
    ghost: Option<(u32, FakeContainer)>,
    lists: u32,
    /// What `kubeadm …` execs answer: exit code and output.
    kubeadm: (i64, String),
    /// How long a `kubeadm …` exec takes before it answers.
    kubeadm_delay: std::time::Duration,
    /// The engine the fake plays (Docker unless [`FakeRuntime::play_podman`]).
    provider: crate::runtime::endpoint::Provider,
    /// The names an image is held under, where they differ from the one it is asked for by.
    repo_tags: BTreeMap<String, Vec<String>>,
    /// Labels of images made here (commits) or given with [`FakeRuntime::add_image`].
    image_labels: BTreeMap<String, HashMap<String, String>>,
    /// How a container's main process ends (`wait_exit`) and what its log says then.
    exit: (i64, String),
    /// Containers whose start fails.
    failing_starts: BTreeSet<String>,
    /// Scripted failures: an exec in this container whose command starts with these words
    /// exits with this code and stderr.
    failing: Vec<(String, String, i64, String)>,
}

/// The fake runtime. Cheap to make; state behind a mutex so it is `Sync`; a clone shares it.
#[derive(Debug, Default, Clone)]
pub struct FakeRuntime {
    state: std::sync::Arc<Mutex<State>>,
}

impl FakeRuntime {
    /// A runtime holding these images, whose kubeadm fails (so a create stops after init and
    /// rolls back, which is what most tests look at).
    pub fn with_images(images: &[&str]) -> FakeRuntime {
        let fake = FakeRuntime::default();
        {
            let mut s = fake.state.lock().unwrap();
            s.images = images.iter().map(|i| i.to_string()).collect();
            s.kubeadm = (1, "error: the fake runtime's kubeadm fails on purpose".into());
        }
        fake
    }

    /// A runtime holding these images whose kubeadm succeeds, printing the join command's CA
    /// hash as the real one does; a create then gets as far as its API lets it.
    pub fn healthy(images: &[&str]) -> FakeRuntime {
        let fake = FakeRuntime::with_images(images);
        fake.state.lock().unwrap().kubeadm =
            (0, "kubeadm join fake:6443 --token <t> \\\n    --discovery-token-ca-cert-hash sha256:0a1b2c3d\n".into());
        fake
    }

    pub fn add_container(&self, name: &str, labels: &[(&str, &str)]) {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().containers.insert(name.into(), FakeContainer { labels, running: true, ..Default::default() });
    }

    /// The networks the fake holds.
    pub fn networks(&self) -> BTreeSet<String> {
        self.state.lock().unwrap().networks.clone()
    }

    /// An image with labels (a snapshot's, say).
    pub fn add_image(&self, image: &str, labels: &[(&str, &str)]) {
        let mut s = self.state.lock().unwrap();
        s.images.insert(image.to_string());
        s.image_labels.insert(image.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }

    /// Answers as Podman does.
    pub fn play_podman(&self) {
        self.state.lock().unwrap().provider = crate::runtime::endpoint::Provider::Podman;
    }

    /// Holds `image` under other names, as Podman holds what a user built as `localhost/NAME`.
    pub fn set_repo_tags(&self, image: &str, tags: &[&str]) {
        self.state.lock().unwrap().repo_tags.insert(image.to_string(), tags.iter().map(|t| t.to_string()).collect());
    }

    /// Every image the fake holds that has labels, with them.
    pub fn image_labels_all(&self) -> BTreeMap<String, HashMap<String, String>> {
        let s = self.state.lock().unwrap();
        s.image_labels.iter().filter(|(i, _)| s.images.contains(*i)).map(|(i, l)| (i.clone(), l.clone())).collect()
    }

    /// Every image the fake holds.
    pub fn images(&self) -> BTreeSet<String> {
        self.state.lock().unwrap().images.clone()
    }

    pub fn add_volume(&self, name: &str, labels: &[(&str, &str)]) {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().volumes.insert(name.to_string(), labels);
    }

    /// A node container as berth's create makes one: labelled for `cluster` and `role`, from
    /// `image`, at `ip`, running, with an anonymous /var volume.
    pub fn add_node(&self, name: &str, labels: &[(&str, &str)], image: &str, ip: &str) {
        let mut s = self.state.lock().unwrap();
        let var = format!("anonymous-var-of-{name}");
        s.volumes.insert(var.clone(), HashMap::new());
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        s.networks.insert(super::NETWORK_NAME.to_string());
        let container = FakeContainer {
            labels,
            ip: Some(ip.into()),
            network: Some(super::NETWORK_NAME.to_string()),
            running: true,
            image: image.into(),
            var: Some(var),
            anonymous_var: true,
            ..Default::default()
        };
        s.containers.insert(name.into(), container);
    }

    /// What `inspect` reports as a container's host config (its published ports, say).
    pub fn set_host_config(&self, container: &str, host_config: HostConfig) {
        self.state.lock().unwrap().containers.get_mut(container).expect("no such container").host_config = Some(host_config.0);
    }

    /// Makes starting `container` fail (as a port taken since would).
    pub fn fail_start(&self, container: &str) {
        self.state.lock().unwrap().failing_starts.insert(container.to_string());
    }

    /// A file in a container (what `read_file` and `download_tar` find).
    pub fn add_file(&self, container: &str, path: &str, contents: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.containers.get_mut(container).expect("add the container first").files.insert(path.to_string(), contents.to_vec());
    }

    /// Makes execs in `container` whose command line starts with `command` exit `code`,
    /// saying `stderr`.
    pub fn fail_exec(&self, container: &str, command: &str, code: i64, stderr: &str) {
        self.state.lock().unwrap().failing.push((container.into(), command.into(), code, stderr.into()));
    }

    /// Forgets every file in a container.
    pub fn remove_files(&self, container: &str) {
        self.state.lock().unwrap().containers.get_mut(container).expect("no such container").files.clear();
    }

    /// Makes every container's main process exit with `code`, its log saying `log`.
    pub fn exit_with(&self, code: i64, log: &str) {
        self.state.lock().unwrap().exit = (code, log.to_string());
    }

    /// Makes `kubeadm …` take this long (time a test can interrupt it in).
    pub fn kubeadm_takes(&self, delay: std::time::Duration) {
        self.state.lock().unwrap().kubeadm_delay = delay;
    }

    /// Each removal is followed by another container with the removed one's labels.
    pub fn keep_landing_ghosts(&self) {
        self.state.lock().unwrap().ghosts_keep_landing = true;
    }

    pub fn land_a_ghost_after_the_first_removal(&self) {
        self.state.lock().unwrap().ghost_after_first_removal = true;
    }

    pub fn containers(&self) -> BTreeMap<String, FakeContainer> {
        self.state.lock().unwrap().containers.clone()
    }

    /// Named volumes and their labels.
    pub fn volumes(&self) -> BTreeMap<String, HashMap<String, String>> {
        self.state.lock().unwrap().volumes.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    fn record(&self, call: String) {
        self.state.lock().unwrap().calls.push(call);
    }

    fn missing(name: &str) -> RuntimeError {
        RuntimeError::Fake(format!("no container {name} in the fake runtime"))
    }
}

fn matches_label(c: &FakeContainer, label: &str) -> bool {
    matches_labels(&c.labels, label)
}

fn matches_labels(labels: &HashMap<String, String>, label: &str) -> bool {
    match label.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(label),
    }
}

/// kubeadm's admin.conf, in shape (the fake API needs no real credentials).
const ADMIN_CONF: &str = "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: 'https://fake-control-plane:6443', certificate-authority-data: Q0E=}
users:
- name: kubernetes-admin
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
contexts:
- name: kubernetes-admin@fake
  context: {cluster: fake, user: kubernetes-admin}
current-context: kubernetes-admin@fake
";

/// Commands a healthy node runs without a word (or whose output no caller reads), answered
/// with exit 0 and nothing: any other command the fake was not told about is an error, so a
/// new exec cannot pass a test by the fake's silence.
const QUIET_SUCCESSES: &[&str] = &[
    "test -S /run/containerd/containerd.sock",
    "ctr version",
    "systemctl restart containerd",
    "systemctl stop kubelet",
    "cat /etc/containerd/config.toml",
    "cat /usr/local/etc/haproxy/haproxy.cfg",
    // No image is in a fake node's containerd.
    "ctr -n k8s.io images ls -q name==",
    "ctr -n k8s.io content get ",
    "ctr -n k8s.io images import ",
    "ctr -n k8s.io images tag --force ",
    "journalctl --no-pager",
    "rm -rf /var/lib/berth/pod-logs",
    "sh -c rm -rf /var/lib/berth/pod-logs && ",
    // The image warm-up (`cluster/create/steps/warm-images.sh`).
    "sh -c #!/bin/sh\n# Run in a node (sh -c): unpacks the images",
];

fn ok(stdout: &str) -> ExecOutput {
    ExecOutput { code: 0, stdout: stdout.to_string(), stderr: String::new() }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn provider(&self) -> crate::runtime::endpoint::Provider {
        self.state.lock().unwrap().provider
    }
    async fn image_exists(&self, image: &str) -> Result<bool> {
        Ok(self.state.lock().unwrap().images.contains(image))
    }
    async fn repo_digests(&self, _image: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn repo_tags(&self, image: &str) -> Result<Vec<String>> {
        let s = self.state.lock().unwrap();
        Ok(s.repo_tags.get(image).cloned().unwrap_or_else(|| vec![image.to_string()]))
    }
    async fn image_labels(&self, image: &str) -> Result<HashMap<String, String>> {
        let s = self.state.lock().unwrap();
        if !s.images.contains(image) {
            return Err(RuntimeError::Fake(format!("no image {image} in the fake runtime")));
        }
        Ok(s.image_labels
            .get(image)
            .cloned()
            .unwrap_or_else(|| HashMap::from([("dev.berth.kubernetes-version".to_string(), "v1.20.2".to_string())])))
    }
    async fn ensure_network(&self, name: &str, _held: &super::Lease) -> Result<Option<Cidr>> {
        if self.state.lock().unwrap().networks.insert(name.to_string()) {
            self.record(format!("create network {name}"));
        }
        Ok(Cidr::new(Ipv4Addr::new(172, 30, 0, 0), 16))
    }
    async fn remove_network_if_unused(&self, name: &str, _held: &super::Lease) -> Result<bool> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        let on_it = s.containers.values().any(|c| c.network.as_deref() == Some(name));
        let reserved = name == super::NETWORK_NAME
            && s.image_labels.iter().any(|(i, l)| s.images.contains(i) && l.contains_key(super::LABEL_RESERVED_ADDRESS));
        if on_it || reserved || !s.networks.remove(name) {
            return Ok(false);
        }
        s.calls.push(format!("remove network {name}"));
        Ok(true)
    }
    async fn used_addresses(&self, _network: &str) -> Result<BTreeSet<Ipv4Addr>> {
        Ok(self.state.lock().unwrap().containers.values().filter_map(|c| c.ip.as_deref()?.parse().ok()).collect())
    }
    async fn create_container(&self, name: &str, body: ContainerBody) -> Result<String> {
        let body = body.0;
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        if s.containers.contains_key(name) {
            return Err(RuntimeError::NameTaken(name.to_string()));
        }
        let endpoint = body.networking_config.and_then(|n| n.endpoints_config).and_then(|e| e.into_iter().next());
        let network = endpoint.as_ref().map(|(n, _)| n.clone()).or_else(|| {
            body.host_config
                .as_ref()
                .and_then(|h| h.network_mode.clone())
                .filter(|m| !["none", "bridge", "default", "host"].contains(&m.as_str()))
        });
        if let Some(network) = network.as_ref().filter(|n| !s.networks.contains(*n)) {
            return Err(RuntimeError::Fake(format!("network {network} not found (the fake's containers need ensure_network first)")));
        }
        let ip = endpoint.and_then(|(_, e)| e.ipam_config).and_then(|i| i.ipv4_address);
        let labels = body.labels.unwrap_or_default();
        let mounts = body.host_config.as_ref().and_then(|h| h.mounts.clone()).unwrap_or_default();
        let named_var = mounts.iter().find(|m| m.target.as_deref() == Some("/var")).and_then(|m| m.source.clone());
        let copies = mounts.iter().filter(|m| m.target.as_deref().is_some_and(|t| t.starts_with("/to/"))).count();
        // Docker makes a named volume that does not exist, empty, as it mounts it.
        for volume in mounts.iter().filter(|m| m.typ == Some(bollard::models::MountType::VOLUME)).filter_map(|m| m.source.clone()) {
            if !s.volumes.contains_key(&volume) {
                s.volumes.insert(volume.clone(), HashMap::new());
                s.calls.push(format!("create volume {volume} (implicitly)"));
            }
        }
        let anonymous_var = named_var.is_none() && body.volumes.iter().flatten().any(|v| v == "/var");
        let var = if anonymous_var {
            let volume = format!("anonymous-var-of-{name}");
            s.volumes.insert(volume.clone(), HashMap::new());
            Some(volume)
        } else {
            named_var
        };
        let image = body.image.unwrap_or_default();
        let container =
            FakeContainer { labels, ip, network, image, var, anonymous_var, host_config: body.host_config, copies, ..Default::default() };
        s.containers.insert(name.to_string(), container);
        s.calls.push(format!("create {name}"));
        Ok(format!("id-{name}"))
    }
    async fn start_container(&self, name: &str) -> Result<()> {
        tokio::task::yield_now().await;
        if self.state.lock().unwrap().failing_starts.contains(name) {
            return Err(RuntimeError::Fake(format!("the fake runtime fails to start {name} on purpose")));
        }
        self.state.lock().unwrap().containers.get_mut(name).ok_or_else(|| Self::missing(name))?.running = true;
        self.record(format!("start {name}"));
        Ok(())
    }
    async fn stop_container(&self, name: &str, _timeout_secs: i32) -> Result<()> {
        tokio::task::yield_now().await;
        self.state.lock().unwrap().containers.get_mut(name).ok_or_else(|| Self::missing(name))?.running = false;
        self.record(format!("stop {name}"));
        Ok(())
    }
    async fn signal(&self, name: &str, signal: &str) -> Result<()> {
        self.state.lock().unwrap().containers.get(name).ok_or_else(|| Self::missing(name))?;
        self.record(format!("signal {name}: {signal}"));
        Ok(())
    }
    async fn remove_container(&self, name: &str) -> Result<()> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        let removed = s.containers.remove(name);
        s.calls.push(format!("remove {name}"));
        if let Some(var) = removed.as_ref().filter(|c| c.anonymous_var).and_then(|c| c.var.clone()) {
            s.volumes.remove(&var);
        }
        if let Some(removed) = removed.filter(|_| s.ghost_after_first_removal || s.ghosts_keep_landing) {
            s.ghost_after_first_removal = false;
            // One listing later for the first removal's ghost (a create in flight); at the next
            // listing when they keep landing.
            let when = if s.ghosts_keep_landing { s.lists } else { s.lists + 1 };
            s.ghost = Some((when, FakeContainer { labels: removed.labels, ..Default::default() }));
        }
        Ok(())
    }
    fn removal(&self, name: &str) -> futures_util::future::BoxFuture<'static, Result<()>> {
        let (state, name) = (self.state.clone(), name.to_string());
        Box::pin(async move {
            let mut s = state.lock().unwrap();
            s.containers.remove(&name);
            s.calls.push(format!("remove {name}"));
            Ok(())
        })
    }
    async fn remove_volumes(&self, label: &str) -> Result<usize> {
        let mut s = self.state.lock().unwrap();
        let doomed: Vec<String> = s.volumes.iter().filter(|(_, l)| matches_labels(l, label)).map(|(name, _)| name.clone()).collect();
        for name in &doomed {
            s.volumes.remove(name);
            s.calls.push(format!("remove volume {name}"));
        }
        Ok(doomed.len())
    }
    async fn remove_volume(&self, name: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.volumes.remove(name);
        s.calls.push(format!("remove volume {name}"));
        Ok(())
    }
    async fn create_volume(&self, name: &str, labels: &[(String, String)]) -> Result<()> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        s.volumes.insert(name.to_string(), labels.iter().cloned().collect());
        s.calls.push(format!("create volume {name}"));
        Ok(())
    }
    async fn list_volumes(&self, label: &str) -> Result<Vec<(String, HashMap<String, String>)>> {
        let s = self.state.lock().unwrap();
        Ok(s.volumes.iter().filter(|(_, l)| matches_labels(l, label)).map(|(n, l)| (n.clone(), l.clone())).collect())
    }
    async fn list_containers(&self, label: &str) -> Result<Vec<ContainerSummary>> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        s.lists += 1;
        if s.ghost.as_ref().is_some_and(|(when, _)| s.lists > *when) {
            let (_, ghost) = s.ghost.take().unwrap();
            s.containers.insert("ghost-from-an-in-flight-create".into(), ghost);
        }
        Ok(s.containers
            .iter()
            .filter(|(_, c)| matches_label(c, label))
            .map(|(name, c)| ContainerSummary {
                id: name.clone(),
                name: name.clone(),
                labels: c.labels.clone(),
                state: if c.running { "running" } else { "created" }.into(),
                image: c.image.clone(),
                created: None,
            })
            .collect())
    }
    async fn inspect(&self, name: &str) -> Result<ContainerDetails> {
        use bollard::models::{EndpointIpamConfig, EndpointSettings, MountPoint, NetworkSettings};
        let s = self.state.lock().unwrap();
        let c = s.containers.get(name).ok_or_else(|| Self::missing(name))?;
        let endpoint = EndpointSettings {
            ip_address: c.ip.clone(),
            ipam_config: Some(EndpointIpamConfig { ipv4_address: c.ip.clone(), ..Default::default() }),
            ..Default::default()
        };
        Ok(ContainerDetails(ContainerInspectResponse {
            name: Some(format!("/{name}")),
            state: Some(bollard::models::ContainerState { running: Some(c.running), ..Default::default() }),
            config: Some(bollard::models::ContainerConfig {
                labels: Some(c.labels.clone()),
                image: Some(c.image.clone()),
                ..Default::default()
            }),
            host_config: c.host_config.clone(),
            mounts: c
                .var
                .as_ref()
                .map(|v| vec![MountPoint { destination: Some("/var".into()), name: Some(v.clone()), ..Default::default() }]),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([(super::NETWORK_NAME.to_string(), endpoint)])),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
    async fn published_port(&self, name: &str, _container_port: &str) -> Result<u16> {
        self.state.lock().unwrap().containers.get(name).ok_or_else(|| Self::missing(name))?;
        Ok(40000)
    }
    async fn container_ip(&self, name: &str, _network: &str) -> Result<String> {
        let s = self.state.lock().unwrap();
        s.containers.get(name).and_then(|c| c.ip.clone()).ok_or_else(|| Self::missing(name))
    }
    async fn exec(&self, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
        let line = cmd.join(" ");
        let (kubeadm, delay) = {
            let mut s = self.state.lock().unwrap();
            s.containers.get(container).filter(|c| c.running).ok_or_else(|| Self::missing(container))?;
            s.calls.push(format!("exec {container}: {line}"));
            if let Some((.., code, stderr)) = s.failing.iter().find(|(c, prefix, ..)| c == container && line.starts_with(prefix.as_str())) {
                return Ok(ExecOutput { code: *code, stdout: String::new(), stderr: stderr.clone() });
            }
            (s.kubeadm.clone(), s.kubeadm_delay)
        };
        if cmd.first() == Some(&"kubeadm") {
            tokio::time::sleep(delay).await;
            self.record(format!("exited {container}: {line}"));
        }
        Ok(match cmd {
            ["systemctl", "is-system-running"] => ok("running\n"),
            ["cat", "/kind/version"] => ok("v1.20.2\n"),
            ["stat", "-fc", "%T", "/sys/fs/cgroup"] => ok("tmpfs\n"),
            ["cat", path] if path.starts_with("/kind/manifests/") => ExecOutput { code: 1, ..Default::default() },
            ["cat", "/etc/kubernetes/admin.conf"] => ok(ADMIN_CONF),
            ["cat", "/etc/kubernetes/pki/ca.crt"] => ok(include_str!("../../tests/testdata/snapshot/apiserver.crt")),
            ["kubeadm", ..] if kubeadm.0 == 0 => ok(&kubeadm.1),
            ["kubeadm", ..] => ExecOutput { code: kubeadm.0, stdout: String::new(), stderr: kubeadm.1 },
            _ if QUIET_SUCCESSES.iter().any(|known| line.starts_with(known)) => ok(""),
            _ => return Err(RuntimeError::Fake(format!("the fake runtime has no answer for `{line}` in {container}: script it"))),
        })
    }
    async fn write_files(&self, container: &str, files: &[(&str, &[u8], u32)]) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let c = s.containers.get_mut(container).ok_or_else(|| Self::missing(container))?;
        for (path, contents, _) in files {
            c.files.insert(path.to_string(), contents.to_vec());
        }
        Ok(())
    }
    async fn logs_tail(&self, name: &str, _lines: usize) -> Result<String> {
        let s = self.state.lock().unwrap();
        let c = s.containers.get(name).ok_or_else(|| Self::missing(name))?;
        // A volume copy that was told nothing else says what its script says on success.
        if c.copies > 0 && s.exit == (0, String::new()) {
            return Ok("bytes 4096\n".repeat(c.copies));
        }
        Ok(s.exit.1.clone())
    }
    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        Ok(self.state.lock().unwrap().images.contains(image).then(|| format!("sha256:fake-{image}")))
    }
    async fn image_size(&self, image: &str) -> Result<i64> {
        self.image_id(image).await?.map(|_| 1 << 20).ok_or_else(|| RuntimeError::Fake(format!("no image {image} in the fake runtime")))
    }
    async fn list_images(&self, label: &str) -> Result<Vec<ImageSummary>> {
        tokio::task::yield_now().await;
        let s = self.state.lock().unwrap();
        Ok(s.image_labels
            .iter()
            .filter(|(name, labels)| s.images.contains(*name) && matches_labels(labels, label))
            .map(|(name, labels)| ImageSummary {
                id: format!("sha256:fake-{name}"),
                repo_tags: vec![name.clone()],
                labels: labels.clone(),
                ..Default::default()
            })
            .collect())
    }
    async fn remove_image(&self, image: &str) -> Result<()> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        if !s.images.remove(image) {
            return Err(RuntimeError::Fake(format!("no image {image} in the fake runtime")));
        }
        s.image_labels.remove(image);
        s.calls.push(format!("remove image {image}"));
        Ok(())
    }
    async fn commit(&self, container: &str, repo: &str, tag: &str, config: ImageConfig) -> Result<String> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        s.containers.get(container).ok_or_else(|| Self::missing(container))?;
        let image = format!("{repo}:{tag}");
        s.images.insert(image.clone());
        s.image_labels.insert(image.clone(), config.label_map());
        s.calls.push(format!("commit {container} as {image}"));
        Ok(format!("sha256:fake-{image}"))
    }
    async fn save_images_to(&self, images: &[&str], path: &std::path::Path) -> Result<()> {
        let s = self.state.lock().unwrap();
        if let Some(missing) = images.iter().find(|i| !s.images.contains(**i)) {
            return Err(RuntimeError::Fake(format!("no image {missing} in the fake runtime")));
        }
        std::fs::write(path, images.join("\n")).map_err(|e| RuntimeError::Fake(format!("writing {}: {e}", path.display())))
    }
    async fn address_holders(&self, _network: &str) -> Result<BTreeMap<Ipv4Addr, String>> {
        let s = self.state.lock().unwrap();
        Ok(s.containers.iter().filter_map(|(name, c)| Some((c.ip.as_deref()?.parse().ok()?, name.clone()))).collect())
    }
    async fn wait_exit(&self, name: &str) -> Result<i64> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        s.containers.get_mut(name).ok_or_else(|| Self::missing(name))?.running = false;
        s.calls.push(format!("wait {name}"));
        Ok(s.exit.0)
    }
    async fn volume_exists(&self, name: &str) -> Result<bool> {
        Ok(self.state.lock().unwrap().volumes.contains_key(name))
    }
    async fn remove_volume_if_there(&self, name: &str) -> Result<bool> {
        tokio::task::yield_now().await;
        let mut s = self.state.lock().unwrap();
        let removed = s.volumes.remove(name).is_some();
        s.calls.push(format!("remove volume {name}"));
        Ok(removed)
    }
    async fn exec_with_input(&self, container: &str, cmd: &[&str], input: Option<super::Input>) -> Result<ExecOutput> {
        if let Some(mut input) = input {
            let mut sink = Vec::new();
            tokio::io::copy(&mut input, &mut sink).await.map_err(|e| RuntimeError::Fake(e.to_string()))?;
            self.record(format!("stdin {container}: {} bytes", sink.len()));
        }
        self.exec(container, cmd).await
    }
    async fn exec_detached(&self, container: &str, cmd: &[&str]) -> Result<()> {
        self.exec(container, cmd).await.map(|_| ())
    }
    async fn upload_tar(
        &self,
        container: &str,
        dir: &str,
        _tar: futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    ) -> Result<()> {
        self.state.lock().unwrap().containers.get(container).ok_or_else(|| Self::missing(container))?;
        self.record(format!("upload {container}:{dir}"));
        Ok(())
    }
    async fn upload_file(&self, container: &str, dir: &str, name: &str, _path: &std::path::Path) -> Result<()> {
        self.state.lock().unwrap().containers.get(container).ok_or_else(|| Self::missing(container))?;
        self.record(format!("upload {container}:{dir}/{name}"));
        Ok(())
    }
    /// The files written into `container` under `path`, as a tar whose entries are named
    /// relative to `path`'s parent (as Docker's archive API names them).
    fn download_tar(&self, container: &str, path: &str) -> futures_util::stream::BoxStream<'_, Result<bytes::Bytes>> {
        use futures_util::StreamExt;
        let tar = (|| {
            let s = self.state.lock().unwrap();
            let c = s.containers.get(container).ok_or_else(|| Self::missing(container))?;
            let parent = std::path::Path::new(path).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            let mut builder = tar::Builder::new(Vec::new());
            let mut found = false;
            for (file, contents) in c.files.iter().filter(|(f, _)| *f == path || f.starts_with(&format!("{path}/"))) {
                let mut header = tar::Header::new_gnu();
                header.set_size(contents.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                let name = file.strip_prefix(&parent).unwrap_or(file).trim_start_matches('/');
                builder.append_data(&mut header, name, contents.as_slice()).map_err(|e| RuntimeError::Fake(e.to_string()))?;
                found = true;
            }
            if !found {
                return Err(RuntimeError::Fake(format!("no {container}:{path} in the fake runtime")));
            }
            builder.into_inner().map_err(|e| RuntimeError::Fake(e.to_string()))
        })();
        futures_util::stream::once(async move { tar.map(bytes::Bytes::from) }).boxed()
    }
    async fn read_file(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        let s = self.state.lock().unwrap();
        let c = s.containers.get(container).ok_or_else(|| Self::missing(container))?;
        c.files.get(path).cloned().ok_or_else(|| RuntimeError::Fake(format!("no {container}:{path} in the fake runtime")))
    }
    fn pull_progress(
        &self,
        from_image: &str,
        _tag: &str,
        _credentials: Option<Credentials>,
    ) -> futures_util::stream::BoxStream<'_, Result<PullProgress>> {
        use futures_util::StreamExt;
        let err = RuntimeError::Fake(format!("the fake runtime pulls nothing ({from_image})"));
        futures_util::stream::once(async move { Err(err) }).boxed()
    }
    async fn probe_privileged(&self, _image: &str, _runtime: Option<&str>, _labels: &[(String, String)]) -> Result<ProbeOutcome> {
        Ok(ProbeOutcome::Started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command nobody scripted fails, naming itself, so a test cannot pass on the fake's
    /// silence; the quiet ones a healthy node runs still succeed.
    #[tokio::test]
    async fn an_unscripted_exec_is_an_error() {
        let fake = FakeRuntime::healthy(&[]);
        fake.add_container("n", &[]);
        let err = fake.exec("n", &["crictl", "rmi", "--prune"]).await.unwrap_err().to_string();
        assert!(err.contains("no answer for `crictl rmi --prune` in n"), "{err}");
        assert_eq!(fake.exec("n", &["ctr", "version"]).await.unwrap().code, 0);
    }
}
