//! Golden files: the rendered config for each kubeadm API version is compared with
//! tests/testdata/kubeadm/*.yaml. `BERTH_UPDATE_GOLDEN=1 cargo test kubeadm` rewrites them;
//! review the diff before committing.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn params(version: &str, join: NodeJoin) -> Params {
    Params {
        version: KubeVersion::parse(version).unwrap(),
        cluster_name: "golden".into(),
        node_name: "golden-control-plane".into(),
        node_ip: "172.18.0.2".into(),
        control_plane_endpoint: "golden-control-plane:6443".into(),
        pod_subnet: "10.244.0.0/16".into(),
        service_subnet: "10.96.0.0/16".into(),
        cgroup: CgroupVersion::V1,
        kube_proxy_mode: ProxyMode::Iptables,
        cert_sans: vec!["localhost".into(), "127.0.0.1".into(), "golden-control-plane".into(), "172.18.0.2".into()],
        feature_gates: BTreeMap::new(),
        runtime_config: BTreeMap::new(),
        node_labels: BTreeMap::from([("tier".to_string(), "apps".to_string())]),
        schedulable_control_plane: true,
        single_control_plane: true,
        hostpath_provisioner: false,
        rootless: false,
        token: "abcdef.0123456789abcdef".into(),
        ca_cert_hash: Some("sha256:00ff".into()),
        certificate_key: None,
        join,
    }
}

fn check_golden(name: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/kubeadm").join(name);
    // Rewriting is not checking: a file that changed is written and the test fails, so the
    // diff is reviewed and the next run compares.
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() && std::fs::read_to_string(&path).ok().as_deref() != Some(rendered) {
        std::fs::write(&path, rendered).unwrap();
        panic!("{name} rewritten (BERTH_UPDATE_GOLDEN is set); review the diff and run again");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(rendered, want, "{name} differs from the golden file; BERTH_UPDATE_GOLDEN=1 rewrites it");
}

#[test]
fn the_ca_hash_is_the_sha256_of_the_public_key_as_kubeadm_computes_it() {
    // openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum
    let pem = include_bytes!("../../tests/testdata/snapshot/apiserver.crt");
    assert_eq!(ca_cert_hash(pem).as_deref(), Some("sha256:608a3bf814689cefa87ca1739e1e0b2114f8a7663b23c044a659a05113f32e30"));
    assert_eq!(ca_cert_hash(b"not a certificate"), None);
}

#[test]
fn api_version_follows_kubernetes_version() {
    let v = |s| ApiVersion::for_kubernetes(KubeVersion::parse(s).unwrap());
    assert_eq!(v("v1.20.2"), ApiVersion::V1Beta2);
    assert_eq!(v("v1.22.17"), ApiVersion::V1Beta2);
    assert_eq!(v("v1.23.0"), ApiVersion::V1Beta3);
    assert_eq!(v("v1.32.2"), ApiVersion::V1Beta3);
    assert_eq!(v("v1.35.9"), ApiVersion::V1Beta3);
    assert_eq!(v("v1.36.0"), ApiVersion::V1Beta4);
    assert!(KubeVersion::parse("latest").is_err());
    assert!(KubeVersion::parse("v1.2").is_err());
}

#[test]
fn control_planes_are_tainted_only_when_there_are_workers() {
    let doc = |p: &Params| -> Vec<serde_yaml::Value> {
        render(p, &[], &[]).unwrap().split("---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect()
    };
    for version in ["v1.20.2", "v1.32.2", "v1.36.0"] {
        let alone = params(version, NodeJoin::Init);
        let taints = &doc(&alone)[0]["nodeRegistration"]["taints"];
        assert_eq!(taints.as_sequence().map(Vec::len), Some(0), "{version}: an empty list removes kubeadm's taint");
        let with_workers = Params { schedulable_control_plane: false, ..alone.clone() };
        assert!(doc(&with_workers)[0]["nodeRegistration"].get("taints").is_none(), "{version}: kubeadm's default taint");
        let worker = Params { join: NodeJoin::Join { control_plane: false }, ..alone.clone() };
        assert!(doc(&worker)[0]["nodeRegistration"].get("taints").is_none(), "{version}: workers are never given taints");
        let second_cp = Params { join: NodeJoin::Join { control_plane: true }, ..alone };
        assert_eq!(doc(&second_cp)[0]["nodeRegistration"]["taints"].as_sequence().map(Vec::len), Some(0));
    }
}

#[test]
fn the_hostpath_provisioner_is_switched_on_only_when_asked() {
    let off = render(&params("v1.20.2", NodeJoin::Init), &[], &[]).unwrap();
    assert!(!off.contains("enable-hostpath-provisioner"));
    let on = render(&Params { hostpath_provisioner: true, ..params("v1.20.2", NodeJoin::Init) }, &[], &[]).unwrap();
    assert!(on.contains("enable-hostpath-provisioner: 'true'") || on.contains("enable-hostpath-provisioner: \"true\""), "{on}");
    let on4 = render(&Params { hostpath_provisioner: true, ..params("v1.36.0", NodeJoin::Init) }, &[], &[]).unwrap();
    assert!(on4.contains("name: enable-hostpath-provisioner"), "{on4}");
}

/// Map-shaped patches as kind's docs write them, for every document a node gets.
const PATCHES: &[&str] = &[
    "kind: ClusterConfiguration\napiServer:\n  certSANs: [api.example.test]\n  extraArgs:\n    v: \"2\"\n    audit-log-maxage: \"3\"\n",
    "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: \"50\"\n",
    "kind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: \"50\"\n",
    "kind: KubeletConfiguration\nserializeImagePulls: false\n",
];

fn patches() -> Vec<String> {
    PATCHES.iter().map(|p| p.to_string()).collect()
}

/// Golden files per Kubernetes version (one per kubeadm API version kind and berth choose, and
/// the version the test image runs), for init, a worker's join and a control plane's join, with
/// [`PATCHES`] applied, on a cgroup v1 host like these machines.
#[test]
fn golden_files_with_patches_for_1_20_1_32_1_36_and_1_37() {
    for version in ["v1.20.2", "v1.32.2", "v1.36.0", "v1.37.2"] {
        let init = render(&params(version, NodeJoin::Init), &patches(), &[]).unwrap();
        check_golden(&format!("{version}-init.yaml"), &init);
        let worker = render(&params(version, NodeJoin::Join { control_plane: false }), &patches(), &[]).unwrap();
        check_golden(&format!("{version}-join.yaml"), &worker);
        let mut cp = params(version, NodeJoin::Join { control_plane: true });
        cp.certificate_key = Some("0123abcd".into());
        check_golden(&format!("{version}-join-control-plane.yaml"), &render(&cp, &patches(), &[]).unwrap());
    }
}

/// A component's flags as name → value, whichever shape (map or v1beta4 list) they are in.
fn flags(args: &serde_yaml::Value) -> BTreeMap<String, String> {
    match args {
        serde_yaml::Value::Mapping(m) => m.iter().map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into())).collect(),
        serde_yaml::Value::Sequence(items) => {
            items.iter().map(|i| (i["name"].as_str().unwrap().into(), i["value"].as_str().unwrap().into())).collect()
        }
        _ => BTreeMap::new(),
    }
}

#[test]
fn the_same_patches_give_the_same_flags_on_every_version() {
    let mut seen = Vec::new();
    for version in ["v1.20.2", "v1.32.2", "v1.36.0"] {
        let out = render(&params(version, NodeJoin::Init), &patches(), &[]).unwrap();
        let docs: Vec<serde_yaml::Value> = out.split("\n---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect();
        let kubelet = flags(&docs[0]["nodeRegistration"]["kubeletExtraArgs"]);
        let apiserver = flags(&docs[1]["apiServer"]["extraArgs"]);
        assert_eq!(kubelet.get("node-ip").map(String::as_str), Some("172.18.0.2"), "{version}: berth's node-ip kept\n{out}");
        assert!(docs[1]["apiServer"]["certSANs"].as_sequence().unwrap().len() == 5, "{version}: SANs added, not replaced\n{out}");
        seen.push((version, kubelet, apiserver));
    }
    for (version, kubelet, apiserver) in &seen[1..] {
        assert_eq!((kubelet, apiserver), (&seen[0].1, &seen[0].2), "{version} differs from {}", seen[0].0);
    }
    assert_eq!(seen[0].1.get("max-pods").map(String::as_str), Some("50"));
    assert_eq!(seen[0].2.get("audit-log-maxage").map(String::as_str), Some("3"));
}

#[test]
fn a_rootless_daemon_gets_kinds_kubelet_gate_or_a_clear_refusal() {
    let rootless = |v: &str| render(&Params { rootless: true, ..params(v, NodeJoin::Init) }, &[], &[]);
    let out = rootless("v1.32.2").unwrap();
    assert!(out.contains("KubeletInUserNamespace: true"), "{out}");
    assert!(!render(&params("v1.32.2", NodeJoin::Init), &[], &[]).unwrap().contains("KubeletInUserNamespace"));
    let err = rootless("v1.20.2").unwrap_err();
    assert!(err.to_string().contains("rootless, which needs Kubernetes 1.22"), "{err}");
}

#[test]
fn current_kubelets_are_told_to_run_on_cgroup_v1_and_only_there() {
    let kubelet = |version: &str, cgroup: CgroupVersion| -> serde_yaml::Value {
        let out = render(&Params { cgroup, ..params(version, NodeJoin::Init) }, &[], &[]).unwrap();
        out.split("\n---\n")
            .map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).unwrap())
            .find(|d| d["kind"] == "KubeletConfiguration")
            .unwrap()
    };
    for version in ["v1.35.0", "v1.37.2"] {
        let v1 = kubelet(version, CgroupVersion::V1);
        assert_eq!(v1["failCgroupV1"].as_bool(), Some(false), "{version} on v1: {v1:?}");
        assert_eq!(v1["cgroupDriver"].as_str(), Some("systemd"), "kind's driver from 1.24, on v1 too");
        let v2 = kubelet(version, CgroupVersion::V2);
        assert!(v2.get("failCgroupV1").is_none(), "{version} on v2 keeps the kubelet's default: {v2:?}");
        assert_eq!(v2["cgroupDriver"].as_str(), Some("systemd"));
        assert!(cgroup_v1_warning(KubeVersion::parse(version).unwrap()).unwrap().contains("1.38"));
    }
    assert!(kubelet("v1.34.4", CgroupVersion::V1).get("failCgroupV1").is_none(), "1.34 runs on v1 by default");
    assert_eq!(kubelet("v1.23.17", CgroupVersion::V1)["cgroupDriver"].as_str(), Some("cgroupfs"), "kind's driver before 1.24");
    assert_eq!(kubelet("v1.23.17", CgroupVersion::V2)["cgroupDriver"].as_str(), Some("systemd"));
    assert_eq!(cgroup_v1_warning(KubeVersion::parse("v1.34.4").unwrap()), None);
    assert_eq!(CgroupVersion::from_fs_type("cgroup2fs\n"), CgroupVersion::V2);
    assert_eq!(CgroupVersion::from_fs_type("tmpfs"), CgroupVersion::V1);
}

#[test]
fn a_lone_controller_manager_and_scheduler_run_without_leader_election() {
    let args = |single: bool| {
        let out = render(&Params { single_control_plane: single, ..params("v1.37.2", NodeJoin::Init) }, &[], &[]).unwrap();
        let cluster: serde_yaml::Value = serde_yaml::from_str(out.split("\n---\n").nth(1).unwrap()).unwrap();
        (flags(&cluster["controllerManager"]["extraArgs"]), flags(&cluster["scheduler"]["extraArgs"]))
    };
    let (cm, scheduler) = args(true);
    assert_eq!(cm.get("leader-elect").map(String::as_str), Some("false"));
    assert_eq!(scheduler.get("leader-elect").map(String::as_str), Some("false"));
    let (cm, scheduler) = args(false);
    assert!(!cm.contains_key("leader-elect") && !scheduler.contains_key("leader-elect"), "several control planes elect a leader");
}

#[test]
fn kube_proxy_none_renders_no_proxy_config_and_skips_its_phase() {
    let p = Params { kube_proxy_mode: ProxyMode::None, ..params("v1.20.2", NodeJoin::Init) };
    assert!(!render(&p, &[], &[]).unwrap().contains("KubeProxyConfiguration"));
    assert_eq!(skipped_phases(ProxyMode::None), "--skip-phases=preflight,addon/kube-proxy");
    assert_eq!(skipped_phases(ProxyMode::Ipvs), "--skip-phases=preflight");
}

#[test]
fn nftables_needs_a_kube_proxy_that_has_it() {
    let at = |version: &str, gate: bool| {
        let mut p = Params { kube_proxy_mode: ProxyMode::Nftables, ..params(version, NodeJoin::Init) };
        if gate {
            p.feature_gates.insert("NFTablesProxyMode".into(), true);
        }
        render(&p, &[], &[])
    };
    let err = at("v1.20.2", true).unwrap_err();
    assert!(err.to_string().contains("networking.kubeProxyMode: nftables needs Kubernetes 1.31"), "{err}");
    assert!(at("v1.30.0", false).is_err());
    assert!(at("v1.30.0", true).unwrap().contains("mode: nftables"));
    assert!(at("v1.32.2", false).unwrap().contains("mode: nftables"));
}

#[test]
fn json6902_patches_reach_the_rendered_document() {
    let p = crate::config::PatchJson6902 {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta3".into(),
        kind: "ClusterConfiguration".into(),
        patch: "- {op: add, path: /apiServer/extraArgs/v, value: \"7\"}\n".into(),
    };
    let out = render(&params("v1.32.2", NodeJoin::Init), &[], std::slice::from_ref(&p)).unwrap();
    assert!(out.contains("v: '7'") || out.contains("v: \"7\""), "{out}");
    let old = render(&params("v1.20.2", NodeJoin::Init), &[], &[p]).unwrap();
    assert!(!old.contains("'7'") && !old.contains("\"7\""), "a v1beta3 patch leaves 1.20's v1beta2 documents alone");
}

#[test]
fn every_document_parses_back_with_kinds() {
    let out = render(&params("v1.20.2", NodeJoin::Init), &[], &[]).unwrap();
    let kinds: Vec<String> =
        out.split("\n---\n").map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"]);
}

#[test]
fn feature_gates_runtime_config_and_patches_land() {
    let mut p = params("v1.20.2", NodeJoin::Init);
    p.feature_gates.insert("EphemeralContainers".into(), true);
    p.runtime_config.insert("api/alpha".into(), "false".into());
    let patch = "kind: KubeletConfiguration\nmaxPods: 50\n".to_string();
    let out = render(&p, &[patch], &[]).unwrap();
    assert!(out.contains("feature-gates: EphemeralContainers=true"), "{out}");
    assert!(out.contains("runtime-config: api/alpha=false"), "{out}");
    assert!(out.contains("maxPods: 50"), "{out}");
    assert!(out.contains("EphemeralContainers: true"), "{out}");
}

#[test]
fn v1beta4_extra_args_are_lists() {
    let out = render(&params("v1.36.0", NodeJoin::Init), &[], &[]).unwrap();
    let init: serde_yaml::Value = serde_yaml::from_str(out.split("\n---\n").next().unwrap()).unwrap();
    let args = &init["nodeRegistration"]["kubeletExtraArgs"];
    assert_eq!(args[0]["name"].as_str(), Some("node-ip"), "{out}");
    assert_eq!(args[0]["value"].as_str(), Some("172.18.0.2"), "{out}");
    assert_eq!(init["nodeRegistration"]["criSocket"].as_str(), Some("unix:///run/containerd/containerd.sock"));
}
