use std::path::Path;

use super::*;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn every_shipped_example_parses() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected the example configs, found {seen}");
}

#[test]
fn examples_mean_what_they_say() {
    let ha = load(&repo("configs/ha.yaml")).unwrap();
    assert_eq!((ha.control_planes().count(), ha.workers().count()), (3, 2));
    let kind = load(&repo("configs/kind-compatible.yaml")).unwrap();
    assert_eq!(kind.name.as_deref(), Some("from-kind"));
    assert_eq!(kind.pod_subnet(), "10.250.0.0/16");
    assert!(kind.nodes[1].extra_mounts[0].read_only);
    assert_eq!(kind.nodes[0].extra_port_mappings[0].host_port, None, "-1 is kind's \"any free port\"");
    assert_eq!(kind.containerd_config_patches.len(), 1);
}

#[test]
fn kinds_spelling_of_disable_default_cni() {
    let c = parse("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  disableDefaultCNI: true\n", "t").unwrap();
    assert!(c.networking.disable_default_cni);
}

#[test]
fn port_protocols_are_read_in_any_case_as_kind_reads_them() {
    let with = |protocol: &str| {
        let text = format!(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraPortMappings:\n  - {{containerPort: 53, hostPort: 5353, protocol: {protocol}}}\n"
        );
        parse(&text, "t").map(|c| c.nodes[0].extra_port_mappings[0].protocol)
    };
    assert_eq!(with("udp").unwrap(), Protocol::Udp, "kind's quick-start spelling");
    assert_eq!(with("UDP").unwrap(), Protocol::Udp);
    assert_eq!(with("Sctp").unwrap(), Protocol::Sctp);
    assert_eq!(with("tcp").unwrap(), Protocol::Tcp);
    let err = with("icmp").unwrap_err().to_string();
    assert!(err.contains("unknown protocol \"icmp\"") && err.contains("TCP, UDP or SCTP"), "{err}");
}

#[test]
fn defaults_fill_the_gaps() {
    let c = parse("kind: Cluster\napiVersion: berth.dev/v1alpha1\n", "t").unwrap();
    assert_eq!(c.nodes.len(), 1);
    assert_eq!(c.nodes[0].role, Role::ControlPlane);
    assert_eq!(c.api_server_address(), "127.0.0.1");
    assert_eq!(c.pod_subnet(), DEFAULT_POD_SUBNET);
    assert_eq!(c.kube_proxy_mode(), ProxyMode::Iptables);
}

/// Each invalid file and a fragment its one-line error must contain.
const INVALID: &[(&str, &[&str])] = &[
    ("invalid-unknown-field.yaml", &["unknown field `rol`", "line 5"]),
    ("invalid-no-control-plane.yaml", &["no node has role control-plane"]),
    ("invalid-overlapping-subnets.yaml", &["overlaps serviceSubnet"]),
    ("invalid-duplicate-host-port.yaml", &["nodes[1].extraPortMappings[0].hostPort", "18081"]),
    ("invalid-bad-name.yaml", &["name:", "not a valid cluster name"]),
    ("invalid-bad-role.yaml", &["unknown variant `master`", "control-plane"]),
    ("invalid-api-version.yaml", &["apiVersion", "not supported"]),
    ("invalid-wrong-type.yaml", &["apiServerPort", "invalid type"]),
    ("invalid-not-yaml.yaml", &["invalid-not-yaml.yaml"]),
    ("invalid-proxy-mode.yaml", &["kubeProxyMode", "userspace"]),
];

#[test]
fn invalid_configs_give_one_line_errors_naming_the_problem() {
    for (file, fragments) in INVALID {
        let path = repo(&format!("tests/testdata/config/{file}"));
        let err = load(&path).expect_err(file).to_string();
        assert!(!err.contains('\n'), "{file}: error is not one line: {err}");
        for f in *fragments {
            assert!(err.contains(f), "{file}: error {err:?} lacks {f:?}");
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "kind: Cluster\napiVersion: berth.dev/v1alpha1\nname: Bad!\nnetworking:\n  podSubnet: 10.0.0.0/8\n  serviceSubnet: 10.96.0.0/16\nnodes:\n  - role: worker\n";
    let err = parse(text, "t").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else { panic!("{err}") };
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn huge_and_deep_inputs_are_errors_not_crashes() {
    let huge = format!("kind: Cluster\napiVersion: berth.dev/v1alpha1\nname: {}\n", "a".repeat(MAX_CONFIG_BYTES as usize));
    assert!(parse(&huge, "t").unwrap_err().to_string().contains("at most"));
    let deep = format!("kind: Cluster\napiVersion: berth.dev/v1alpha1\nnodes: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse(&deep, "t").is_err());
}

#[test]
fn cluster_names() {
    for ok in ["berth", "e2e-one", "a", "x1"] {
        assert!(validate_cluster_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "../x", "a/b", "a.b", &"a".repeat(MAX_CLUSTER_NAME + 1)] {
        assert!(validate_cluster_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn cidr_overlap() {
    let c = |s| Cidr::parse(s).unwrap();
    assert!(c("10.0.0.0/8").overlaps(c("10.96.0.0/16")));
    assert!(!c("10.244.0.0/16").overlaps(c("10.96.0.0/16")));
    assert!(Cidr::parse("10.0.0.0/33").is_err());
    assert!(Cidr::parse("nope").is_err());
}

mod fuzz {
    use proptest::prelude::*;

    use super::super::parse;

    fn yaml_scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("control-plane".to_string()),
            Just("worker".to_string()),
            Just("null".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            "-?[0-9]{1,6}",
            "[a-zA-Z0-9./:_-]{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Any bytes: an error or a config, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse(&text, "fuzz");
        }

        /// Structurally plausible configs with random values and field names.
        #[test]
        fn plausible_configs_never_panic(
            fields in proptest::collection::vec(("[a-zA-Z]{1,16}", yaml_scalar()), 0..6),
            roles in proptest::collection::vec(yaml_scalar(), 0..4),
            pod in "[0-9./]{0,18}",
            port in any::<i64>(),
        ) {
            let mut text = String::from("kind: Cluster\napiVersion: berth.dev/v1alpha1\n");
            for (k, v) in &fields {
                text.push_str(&format!("{k}: {v}\n"));
            }
            text.push_str(&format!("networking:\n  podSubnet: \"{pod}\"\n  apiServerPort: {port}\nnodes:\n"));
            for r in &roles {
                text.push_str(&format!("  - role: {r}\n"));
            }
            if let Ok(c) = parse(&text, "fuzz") {
                prop_assert!(c.control_planes().count() >= 1, "a valid config always has a control plane");
            }
        }

        /// Deep nesting of either kind is an error (a node is a mapping, never a list or a
        /// mapping nested in a plain scalar), not a stack overflow.
        #[test]
        fn deep_nesting_is_an_error(depth in 2usize..3000, flow in any::<bool>()) {
            let nested = if flow {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                (0..depth.min(400)).map(|i| format!("{}a:\n", " ".repeat(i))).collect::<String>()
            };
            let parsed = parse(&format!("kind: Cluster\napiVersion: berth.dev/v1alpha1\nnodes: {nested}\n"), "fuzz");
            prop_assert!(parsed.is_err(), "depth {depth} (flow: {flow}) was accepted");
        }
    }
}

#[test]
fn a_mount_path_with_a_colon_is_refused_by_field() {
    let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n  - role: control-plane\n    extraMounts:\n      - hostPath: /srv/a:b\n        containerPath: /data\n";
    let err = parse(text, "t").unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else { panic!("{err}") };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("nodes[0].extraMounts[0].hostPath: \"/srv/a:b\" contains ':'"), "{problems:?}");
}
