//! `--kubernetes-version`: Kubernetes built here from its Go modules, with the component images
//! its kubeadm names — no registry and no Kubernetes checkout needed, only Go.
//!
//! Owns the recipe: which commands of `k8s.io/kubernetes` (its staging modules pinned by
//! `replace` to the matching `v0.Y.Z`, as consumers of that module must), how they are stamped
//! (the `-X` settings Kubernetes' own build sets, so `kubeadm version` says `vX.Y.Z`), and
//! which image each line of `kubeadm config images list` becomes: the control-plane components,
//! etcd and CoreDNS from their own modules at the versions kubeadm names, pause from the
//! Kubernetes tree's C source. kube-proxy needs iptables and friends, so the caller builds its
//! image over the base image (see [`Built::kube_proxy`]).

use std::path::{Path, PathBuf};

use super::archive::{write_simple_image, SimpleImage};
use super::go::{self, Go, Program};
use super::NodeImageError;
use crate::ui::Status;

type Result<T, E = NodeImageError> = std::result::Result<T, E>;

/// The commands a node image carries or runs, all from `k8s.io/kubernetes/cmd/`.
const COMMANDS: &[&str] = &["kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"];

/// Kubernetes' own build tags for release binaries.
const BUILD_TAGS: &[&str] = &["selinux", "notest", "grpcnotrace"];

/// Bumped when what a component image holds changes for the same name (etcd gained etcdctl).
const COMPONENTS_RECIPE: &str = "components-2";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// kubeadm, kubelet, kubectl and the rest, for this machine.
    pub bin_dir: PathBuf,
    /// One archive per component image kubeadm names, but kube-proxy's.
    pub archives: Vec<PathBuf>,
    /// kube-proxy's image name, for the caller to build over the base image with
    /// `bin_dir/kube-proxy` at `/usr/local/bin/kube-proxy`.
    pub kube_proxy: String,
}

/// A component image kubeadm asks for, and how berth makes it.
#[derive(Debug, Clone, PartialEq)]
enum Component {
    /// kube-apiserver, kube-controller-manager, kube-scheduler: the binary just built.
    ControlPlane(String),
    KubeProxy,
    /// `go.etcd.io/etcd/server/v3` at this version (kubeadm's tag without its `-N` suffix).
    Etcd(String),
    /// `github.com/coredns/coredns` at this version.
    CoreDns(String),
    /// Kubernetes' `build/pause` C source, stamped with this version.
    Pause(String),
    /// `sigs.k8s.io/metrics-server` at this version: berth's `--addon metrics-server`.
    MetricsServer(String),
}

/// What `image` (`registry/name:tag`, as kubeadm lists it) is.
fn component(image: &str) -> Option<Component> {
    let (path, tag) = image.rsplit_once(':')?;
    let name = path.rsplit('/').next()?;
    Some(match name {
        "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" => Component::ControlPlane(name.to_string()),
        "kube-proxy" => Component::KubeProxy,
        "etcd" => Component::Etcd(format!("v{}", tag.split('-').next()?)),
        "coredns" => Component::CoreDns(tag.to_string()),
        "pause" => Component::Pause(tag.to_string()),
        "metrics-server" => Component::MetricsServer(tag.to_string()),
        _ => return None,
    })
}

/// `v1.37.2` → the staging modules' `v0.37.2` (pre-release suffixes kept).
fn staging_version(version: &str) -> String {
    format!("v0.{}", version.trim_start_matches('v').split_once('.').map_or("", |(_, rest)| rest))
}

/// The staging modules `k8s.io/kubernetes`'s go.mod replaces by path, which a dependency's
/// replace lines cannot do for us.
fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|l| {
            let (module, target) = l.trim().trim_start_matches("replace").trim().split_once("=>")?;
            target.trim().starts_with("./staging/").then(|| module.trim().to_string())
        })
        .collect()
}

/// The `go` line of a go.mod.
fn go_directive(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|l| l.strip_prefix("go ").map(|v| v.trim().to_string()))
}

/// The `-X` settings of Kubernetes' hack/lib/version.sh for `version`.
fn version_stamp(version: &str, build_date: Option<&str>) -> Vec<String> {
    let core = version.trim_start_matches('v');
    let mut parts = core.split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next().unwrap_or_default();
    let mut out = Vec::new();
    for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        out.push(format!("{pkg}.gitVersion={version}"));
        out.push(format!("{pkg}.gitMajor={major}"));
        out.push(format!("{pkg}.gitMinor={minor}"));
        out.push(format!("{pkg}.gitTreeState=clean"));
        if let Some(date) = build_date {
            out.push(format!("{pkg}.buildDate={date}"));
        }
    }
    out
}

/// Builds Kubernetes `version` and its component images (kept beside the binaries in the
/// cache, written whole or not at all, like them).
pub async fn build(go: &Go, version: &str, status: &Status) -> Result<Built> {
    let step = status.step(format!("Fetching k8s.io/kubernetes {version} from the Go module proxy"));
    let scratch = go::cache_root().join("go").join("scratch");
    let kubernetes = go.download(&scratch, "k8s.io/kubernetes", version).await?;
    step.done();

    let staging = staging_version(version);
    let program = Program {
        name: "kubernetes".into(),
        module: "k8s.io/kubernetes".into(),
        version: version.into(),
        replaces: staging_modules(&kubernetes.go_mod).into_iter().map(|m| (m, staging.clone())).collect(),
        commands: COMMANDS.iter().map(|c| (format!("k8s.io/kubernetes/cmd/{c}"), c.to_string())).collect(),
        tags: BUILD_TAGS.iter().map(|t| t.to_string()).collect(),
        x_flags: version_stamp(version, kubernetes.time.as_deref()),
        ..Default::default()
    };
    let step = status.step(format!("Compiling Kubernetes {version}"));
    let directive = go_directive(&kubernetes.go_mod).unwrap_or_else(|| "1.26".into());
    let bin_dir = go::build(go, &program, &directive, &step).await?;
    step.done();

    let kubeadm = bin_dir.join("kubeadm");
    let mut listed = images_list(&kubeadm, version).await?;
    // berth's add-ons run images of their own; those berth can build go in too, so `--addon`
    // works with no registry.
    listed.extend(crate::addons::ADDONS.iter().flat_map(|a| a.images).map(|i| i.to_string()).filter(|i| component(i).is_some()));
    let kube_proxy = listed
        .iter()
        .find(|i| component(i) == Some(Component::KubeProxy))
        .cloned()
        .ok_or_else(|| NodeImageError::UnknownComponent { version: version.into(), image: "(kubeadm names no kube-proxy)".into() })?;
    let images: Vec<(String, Component)> = listed
        .iter()
        .filter(|i| **i != kube_proxy)
        .map(|i| {
            component(i)
                .map(|c| (i.clone(), c))
                .ok_or_else(|| NodeImageError::UnknownComponent { version: version.into(), image: i.clone() })
        })
        .collect::<Result<_>>()?;
    let sources = Sources { go, kubernetes: &kubernetes, bin_dir: &bin_dir, status };
    let archives =
        component_archives(&sources, &images, &bin_dir.parent().expect("a cache entry's bin has a parent").join("images")).await?;
    Ok(Built { bin_dir, archives, kube_proxy })
}

/// What component images are made from.
struct Sources<'a> {
    go: &'a Go,
    kubernetes: &'a go::Downloaded,
    bin_dir: &'a Path,
    status: &'a Status,
}

/// The archives of `images` in `dir`, made there whole (in `dir.part`, renamed when every one
/// is written) unless a finished set for the same list is there already.
async fn component_archives(sources: &Sources<'_>, images: &[(String, Component)], dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |what: &str| {
        let what = format!("{what} {}", dir.display());
        move |e| super::io_err(what, e)
    };
    // What the images hold changes with the recipe, not only with their names.
    let marker = std::iter::once(COMPONENTS_RECIPE).chain(images.iter().map(|(i, _)| i.as_str())).collect::<Vec<_>>().join("\n");
    let archives: Vec<PathBuf> = images.iter().map(|(i, _)| dir.join(format!("{}.tar", archive_name(i)))).collect();
    if std::fs::read_to_string(dir.join(".complete")).is_ok_and(|done| done == marker) {
        return Ok(archives);
    }
    let part = dir.with_extension("part");
    if part.exists() {
        std::fs::remove_dir_all(&part).map_err(io("clearing"))?;
    }
    std::fs::create_dir_all(&part).map_err(io("creating"))?;
    for (image, which) in images {
        let made = component_image(sources, image, which).await?;
        write_simple_image(&made, &part.join(format!("{}.tar", archive_name(image))))?;
    }
    std::fs::write(part.join(".complete"), &marker).map_err(io("marking complete"))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io("clearing"))?;
    }
    std::fs::rename(&part, dir).map_err(io("moving into"))?;
    Ok(archives)
}

/// One component image: its binary, built if need be, and how it runs.
async fn component_image(sources: &Sources<'_>, image: &str, which: &Component) -> Result<SimpleImage> {
    let simple = |files: Vec<(String, PathBuf, u32)>, entrypoint: Vec<&str>| SimpleImage {
        name: image.to_string(),
        files,
        env: vec![PATH_ENV.into()],
        entrypoint: entrypoint.into_iter().map(str::to_string).collect(),
        user: None,
        created: sources.kubernetes.time.clone(),
    };
    let (go, status) = (sources.go, sources.status);
    Ok(match which {
        Component::KubeProxy => unreachable!("kube-proxy is built over the base image"),
        Component::ControlPlane(name) => simple(vec![(format!("/usr/local/bin/{name}"), sources.bin_dir.join(name), 0o755)], vec![]),
        Component::Etcd(v) => {
            let dir = build_etcd(go, v, status).await?;
            simple(
                vec![
                    ("/usr/local/bin/etcd".into(), dir.join("etcd"), 0o755),
                    ("/usr/local/bin/etcdctl".into(), dir.join("etcdctl"), 0o755),
                ],
                vec![],
            )
        }
        Component::CoreDns(v) => {
            let dir = build_coredns(go, v, status).await?;
            simple(vec![("/coredns".into(), dir.join("coredns"), 0o755)], vec!["/coredns"])
        }
        Component::Pause(v) => {
            let pause = build_pause(&sources.kubernetes.dir, v, status).await?;
            simple(vec![("/pause".into(), pause, 0o755)], vec!["/pause"])
        }
        Component::MetricsServer(v) => {
            let dir = build_metrics_server(go, v, status).await?;
            // As its own image runs: not as root.
            SimpleImage {
                user: Some("65534".into()),
                ..simple(vec![("/metrics-server".into(), dir.join("metrics-server"), 0o755)], vec!["/metrics-server"])
            }
        }
    })
}

/// The built kubeadm's own list: exactly the images the node preloads, so kubeadm never pulls.
async fn images_list(kubeadm: &Path, version: &str) -> Result<Vec<String>> {
    let out = tokio::process::Command::new(kubeadm)
        .args(["config", "images", "list", "--kubernetes-version", version])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| super::io_err(format!("running {}", kubeadm.display()), e))?;
    if !out.status.success() {
        return Err(NodeImageError::BadVersion(format!(
            "kubeadm {version} could not list its images: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

fn archive_name(image: &str) -> String {
    image.rsplit('/').next().unwrap_or(image).replace(':', "-")
}

async fn build_etcd(go: &Go, version: &str, status: &Status) -> Result<PathBuf> {
    let module = "go.etcd.io/etcd/server/v3";
    let step = status.step(format!("Compiling etcd {version}"));
    // etcd's go.mod replaces its sibling modules by path; as a dependency, the versions it
    // requires (the same release) are what the proxy serves.
    let scratch = go::cache_root().join("go").join("scratch");
    let downloaded = go.download(&scratch, module, version).await?;
    // etcdctl too, as etcd's own images carry it: what one asks etcd about its members with.
    let etcdctl = "go.etcd.io/etcd/etcdctl/v3";
    let program = Program {
        name: "etcd".into(),
        module: module.into(),
        version: version.into(),
        requires: vec![(etcdctl.into(), version.into())],
        commands: vec![(module.into(), "etcd".into()), (etcdctl.into(), "etcdctl".into())],
        x_flags: vec![format!("go.etcd.io/etcd/api/v3/version.GitSHA={version}")],
        ..Default::default()
    };
    let dir = go::build(go, &program, &go_directive(&downloaded.go_mod).unwrap_or_else(|| "1.26".into()), &step).await?;
    step.done();
    Ok(dir)
}

async fn build_metrics_server(go: &Go, version: &str, status: &Status) -> Result<PathBuf> {
    let module = "sigs.k8s.io/metrics-server";
    let step = status.step(format!("Compiling metrics-server {version}"));
    let scratch = go::cache_root().join("go").join("scratch");
    let downloaded = go.download(&scratch, module, version).await?;
    let program = Program {
        name: "metrics-server".into(),
        module: module.into(),
        version: version.into(),
        commands: vec![(format!("{module}/cmd/metrics-server"), "metrics-server".into())],
        // Its Makefile stamps client-go's version package with the release.
        x_flags: vec![format!("k8s.io/client-go/pkg/version.gitVersion={version}")],
        ..Default::default()
    };
    let dir = go::build(go, &program, &go_directive(&downloaded.go_mod).unwrap_or_else(|| "1.24".into()), &step).await?;
    step.done();
    Ok(dir)
}

async fn build_coredns(go: &Go, version: &str, status: &Status) -> Result<PathBuf> {
    let module = "github.com/coredns/coredns";
    let step = status.step(format!("Compiling CoreDNS {version}"));
    let scratch = go::cache_root().join("go").join("scratch");
    let downloaded = go.download(&scratch, module, version).await?;
    let program = Program {
        name: "coredns".into(),
        module: module.into(),
        version: version.into(),
        commands: vec![(module.into(), "coredns".into())],
        tags: vec!["grpcnotrace".into()],
        x_flags: vec![format!("github.com/coredns/coredns/coremain.GitCommit={version}")],
        ..Default::default()
    };
    let dir = go::build(go, &program, &go_directive(&downloaded.go_mod).unwrap_or_else(|| "1.25".into()), &step).await?;
    step.done();
    Ok(dir)
}

/// pause is C: Kubernetes' `build/pause/linux/pause.c`, static, as its Makefile builds it.
async fn build_pause(kubernetes_src: &Path, version: &str, status: &Status) -> Result<PathBuf> {
    let step = status.step(format!("Compiling pause {version}"));
    let out_dir = go::cache_root().join("pause").join(version);
    let out = out_dir.join("pause");
    if out.is_file() {
        step.done();
        return Ok(out);
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| super::io_err(format!("creating {}", out_dir.display()), e))?;
    let source = kubernetes_src.join("build/pause/linux/pause.c");
    let part = out_dir.join("pause.part");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let result = tokio::process::Command::new(&cc)
        .args(["-Os", "-Wall", "-Werror", "-static", &format!("-DVERSION={version}"), "-o"])
        .arg(&part)
        .arg(&source)
        .kill_on_drop(true)
        .output()
        .await;
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(NodeImageError::CompilerFailed {
                what: format!("pause {version}"),
                tail: String::from_utf8_lossy(&o.stderr).lines().rev().take(5).collect::<Vec<_>>().join("\n"),
            })
        }
        Err(e) => return Err(NodeImageError::NoCCompiler { cc, reason: e.to_string() }),
    }
    std::fs::rename(&part, &out).map_err(|e| super::io_err("keeping the pause binary", e))?;
    step.done();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_kubeadm_names_has_a_recipe() {
        let listed = [
            "registry.k8s.io/kube-apiserver:v1.37.2",
            "registry.k8s.io/kube-proxy:v1.37.2",
            "registry.k8s.io/coredns/coredns:v1.14.6",
            "registry.k8s.io/pause:3.10.2",
            "registry.k8s.io/etcd:3.7.0-0",
        ];
        let found: Vec<Option<Component>> = listed.iter().map(|i| component(i)).collect();
        assert_eq!(
            found,
            [
                Some(Component::ControlPlane("kube-apiserver".into())),
                Some(Component::KubeProxy),
                Some(Component::CoreDns("v1.14.6".into())),
                Some(Component::Pause("3.10.2".into())),
                Some(Component::Etcd("v3.7.0".into())),
            ]
        );
        assert_eq!(component("registry.k8s.io/something-new:v1"), None);
        assert_eq!(component(crate::addons::METRICS_SERVER_IMAGES[0]), Some(Component::MetricsServer("v0.8.0".into())));
    }

    #[test]
    fn staging_modules_are_replaced_by_their_v0_release() {
        let go_mod = "module k8s.io/kubernetes\n\ngo 1.26.0\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/streaming => ./staging/src/k8s.io/streaming\n)\n\nreplace github.com/x/y => github.com/x/y v1.0.0\n";
        assert_eq!(staging_modules(go_mod), ["k8s.io/api", "k8s.io/streaming"]);
        assert_eq!(go_directive(go_mod).as_deref(), Some("1.26.0"));
        assert_eq!(staging_version("v1.37.2"), "v0.37.2");
        assert_eq!(staging_version("v1.38.0-beta.0"), "v0.38.0-beta.0");
    }

    #[test]
    fn the_version_is_stamped_as_kubernetes_stamps_it() {
        let flags = version_stamp("v1.37.2", Some("2026-10-27T12:01:04Z"));
        for want in [
            "k8s.io/component-base/version.gitVersion=v1.37.2",
            "k8s.io/component-base/version.gitMajor=1",
            "k8s.io/component-base/version.gitMinor=37",
            "k8s.io/client-go/pkg/version.gitVersion=v1.37.2",
            "k8s.io/client-go/pkg/version.buildDate=2026-10-27T12:01:04Z",
        ] {
            assert!(flags.iter().any(|f| f == want), "{want} in {flags:?}");
        }
    }
}
