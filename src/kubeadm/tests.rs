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
        cgroup_driver: "cgroupfs".into(),
        kube_proxy_mode: "iptables".into(),
        cert_sans: vec!["localhost".into(), "127.0.0.1".into(), "golden-control-plane".into(), "172.18.0.2".into()],
        feature_gates: BTreeMap::new(),
        runtime_config: BTreeMap::new(),
        node_labels: BTreeMap::from([("tier".to_string(), "apps".to_string())]),
        schedulable_control_plane: true,
        hostpath_provisioner: false,
        token: "abcdef.0123456789abcdef".into(),
        ca_cert_hash: Some("sha256:00ff".into()),
        certificate_key: None,
        join,
    }
}

fn check_golden(name: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/kubeadm").join(name);
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(rendered, want, "{name} differs from the golden file; BERTH_UPDATE_GOLDEN=1 rewrites it");
}

#[test]
fn api_version_follows_kubernetes_version() {
    let v = |s| ApiVersion::for_kubernetes(KubeVersion::parse(s).unwrap());
    assert_eq!(v("v1.20.2"), ApiVersion::V1Beta2);
    assert_eq!(v("v1.21.14"), ApiVersion::V1Beta2);
    assert_eq!(v("v1.22.0"), ApiVersion::V1Beta3);
    assert_eq!(v("v1.30.9"), ApiVersion::V1Beta3);
    assert_eq!(v("v1.31.0"), ApiVersion::V1Beta4);
    assert_eq!(v("v1.32.2"), ApiVersion::V1Beta4);
    assert!(KubeVersion::parse("latest").is_err());
    assert!(KubeVersion::parse("v1.2").is_err());
}

#[test]
fn control_planes_are_tainted_only_when_there_are_workers() {
    let doc = |p: &Params| -> Vec<serde_yaml::Value> {
        render(p, &[]).unwrap().split("---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect()
    };
    for version in ["v1.20.2", "v1.32.2"] {
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
    let off = render(&params("v1.20.2", NodeJoin::Init), &[]).unwrap();
    assert!(!off.contains("enable-hostpath-provisioner"));
    let on = render(&Params { hostpath_provisioner: true, ..params("v1.20.2", NodeJoin::Init) }, &[]).unwrap();
    assert!(on.contains("enable-hostpath-provisioner: 'true'") || on.contains("enable-hostpath-provisioner: \"true\""), "{on}");
    let on4 = render(&Params { hostpath_provisioner: true, ..params("v1.32.2", NodeJoin::Init) }, &[]).unwrap();
    assert!(on4.contains("name: enable-hostpath-provisioner"), "{on4}");
}

#[test]
fn golden_v1beta2_init() {
    check_golden("v1beta2-init.yaml", &render(&params("v1.20.2", NodeJoin::Init), &[]).unwrap());
}

#[test]
fn golden_v1beta2_join() {
    check_golden("v1beta2-join.yaml", &render(&params("v1.20.2", NodeJoin::Join { control_plane: false }), &[]).unwrap());
}

#[test]
fn golden_v1beta3_init() {
    check_golden("v1beta3-init.yaml", &render(&params("v1.27.3", NodeJoin::Init), &[]).unwrap());
}

#[test]
fn golden_v1beta4_init() {
    check_golden("v1beta4-init.yaml", &render(&params("v1.32.2", NodeJoin::Init), &[]).unwrap());
}

#[test]
fn golden_v1beta4_control_plane_join() {
    let mut p = params("v1.32.2", NodeJoin::Join { control_plane: true });
    p.certificate_key = Some("0123abcd".into());
    check_golden("v1beta4-join-control-plane.yaml", &render(&p, &[]).unwrap());
}

#[test]
fn every_document_parses_back_with_kinds() {
    let out = render(&params("v1.20.2", NodeJoin::Init), &[]).unwrap();
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
    let out = render(&p, &[patch]).unwrap();
    assert!(out.contains("feature-gates: EphemeralContainers=true"), "{out}");
    assert!(out.contains("runtime-config: api/alpha=false"), "{out}");
    assert!(out.contains("maxPods: 50"), "{out}");
    assert!(out.contains("EphemeralContainers: true"), "{out}");
}

#[test]
fn v1beta4_extra_args_are_lists() {
    let out = render(&params("v1.32.2", NodeJoin::Init), &[]).unwrap();
    let init: serde_yaml::Value = serde_yaml::from_str(out.split("\n---\n").next().unwrap()).unwrap();
    let args = &init["nodeRegistration"]["kubeletExtraArgs"];
    assert_eq!(args[0]["name"].as_str(), Some("node-ip"), "{out}");
    assert_eq!(args[0]["value"].as_str(), Some("172.18.0.2"), "{out}");
    assert_eq!(init["nodeRegistration"]["criSocket"].as_str(), Some("unix:///run/containerd/containerd.sock"));
}
