//! Every kubeadm document berth renders for the test image's Kubernetes, checked by that
//! Kubernetes' own kubeadm (`kubeadm config validate`, the binary the test image carries, from
//! berth's build cache): init, a worker's join and a control plane's join, on cgroup v1 and v2
//! hosts, with kind-style patches. No cluster: it takes a second or two.

use std::collections::BTreeMap;
use std::process::Command;

use crate::common::*;
use berth::config::{PatchJson6902, ProxyMode};
use berth::kubeadm::{render, CgroupVersion, KubeVersion, NodeJoin, Params};

fn params(version: KubeVersion, join: NodeJoin, cgroup: CgroupVersion) -> Params {
    Params {
        version,
        cluster_name: "validate".into(),
        node_name: "validate-worker".into(),
        node_ip: "172.18.128.3".into(),
        control_plane_endpoint: "validate-external-load-balancer:6443".into(),
        pod_subnet: "10.244.0.0/16".into(),
        service_subnet: "10.96.0.0/16".into(),
        cgroup,
        kube_proxy_mode: ProxyMode::Iptables,
        cert_sans: vec!["localhost".into(), "127.0.0.1".into(), "validate-control-plane".into(), "172.18.128.2".into()],
        feature_gates: BTreeMap::new(),
        runtime_config: BTreeMap::from([("api/alpha".to_string(), "false".to_string())]),
        node_labels: BTreeMap::from([("tier".to_string(), "apps".to_string())]),
        schedulable_control_plane: false,
        single_control_plane: false,
        hostpath_provisioner: true,
        rootless: false,
        token: "abcdef.0123456789abcdef".into(),
        ca_cert_hash: Some(format!("sha256:{}", "0f".repeat(32))),
        certificate_key: Some("0123456789abcdef".repeat(4)),
        join,
    }
}

/// Patches as kind's documentation writes them, map-shaped, one for each kind of document.
const PATCHES: &[&str] = &[
    "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    service-node-port-range: 30000-30100\n  certSANs: [api.example.test]\n",
    "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: \"ingress-ready=true\"\n",
    "kind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: \"50\"\n",
    "kind: KubeletConfiguration\nserializeImagePulls: false\n",
    "kind: KubeProxyConfiguration\niptables:\n  minSyncPeriod: 1s\n",
];

#[test]
#[cfg_attr(not(berth_e2e), ignore = "end-to-end: needs BERTH_E2E=1, Docker and the test image")]
fn the_images_kubeadm_accepts_every_document_berth_renders() {
    if !require_e2e("the_images_kubeadm_accepts_every_document_berth_renders") {
        return;
    }
    let inputs = test_inputs();
    let kubeadm = std::path::Path::new(&inputs["KUBE_BIN"]).join("kubeadm");
    let version = KubeVersion::parse(&inputs["KUBE_VERSION"]).unwrap();
    let json6902 = [PatchJson6902 {
        group: "kubeadm.k8s.io".into(),
        version: "v1beta4".into(),
        kind: "ClusterConfiguration".into(),
        patch: "- {op: add, path: /apiServer/extraArgs/-, value: {name: audit-log-maxage, value: \"3\"}}\n".into(),
    }];
    let patches: Vec<String> = PATCHES.iter().map(|p| p.to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (what, join) in [
        ("init", NodeJoin::Init),
        ("join", NodeJoin::Join { control_plane: false }),
        ("control-plane join", NodeJoin::Join { control_plane: true }),
    ] {
        for cgroup in [CgroupVersion::V1, CgroupVersion::V2] {
            let text = render(&params(version, join.clone(), cgroup), &patches, &json6902).unwrap();
            if join == NodeJoin::Init {
                assert!(text.contains("audit-log-maxage"), "the JSON 6902 patch applied: {text}");
                assert_eq!(text.contains("failCgroupV1: false"), cgroup == CgroupVersion::V1, "{text}");
            }
            let file = dir.path().join(format!("{what}-{cgroup:?}.yaml").replace(' ', "-"));
            std::fs::write(&file, &text).unwrap();
            let out = Command::new(&kubeadm).args(["config", "validate", "--config"]).arg(&file).output().unwrap();
            let (stdout, stderr) = text_of(&out);
            assert!(out.status.success(), "kubeadm {version} refuses berth's {what} config ({cgroup:?}):\n{stderr}{stdout}\n---\n{text}");
            assert!(!stderr.contains("unknown field"), "{what}: {stderr}");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

fn text_of(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
