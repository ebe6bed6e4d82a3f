//! Image archives: the `docker save` / OCI tar files `build node-image` preloads, and the
//! one-layer images it writes itself (a static binary and little else: the control-plane
//! components, etcd, CoreDNS, pause), in `docker save`'s format, which containerd imports.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::image::{Arch, ConfigBuilder, ImageConfigurationBuilder, Os, RootFsBuilder};
use sha2::{Digest, Sha256};

use super::NodeImageError;

/// A one-layer image to write: files (path in the image, file on the host, mode) and how it runs.
#[derive(Debug, Clone, Default)]
pub struct SimpleImage {
    /// `repo:tag`, as kubeadm names it.
    pub name: String,
    pub files: Vec<(String, PathBuf, u32)>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    /// The user it runs as (`uid` or `uid:gid`), where not root.
    pub user: Option<String>,
    /// When the image was made (RFC 3339); fixed inputs give the same archive.
    pub created: Option<String>,
}

/// Writes `image` as a `docker save` archive at `path` (via `path.part`, renamed when whole).
pub fn write_simple_image(image: &SimpleImage, path: &Path) -> Result<(), NodeImageError> {
    let io = |e: std::io::Error| NodeImageError::Io { context: format!("writing the image archive {}", path.display()), source: e };
    let part = path.with_extension("tar.part");
    let layer = layer_tar(&image.files).map_err(io)?;
    let diff_id = format!("sha256:{}", hex(&Sha256::digest(&layer)));
    let spec = |e: oci_spec::OciSpecError| io(std::io::Error::other(e));
    let mut run = ConfigBuilder::default().env(image.env.clone());
    if !image.entrypoint.is_empty() {
        run = run.entrypoint(image.entrypoint.clone());
    }
    if let Some(user) = &image.user {
        run = run.user(user.clone());
    }
    let mut config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(run.build().map_err(spec)?)
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(vec![diff_id.clone()]).build().map_err(spec)?);
    if let Some(created) = &image.created {
        config = config.created(created.clone());
    }
    let config = config.build().map_err(spec)?.to_string().map_err(spec)?.into_bytes();
    let config_name = format!("{}.json", hex(&Sha256::digest(&config)));
    let layer_name = format!("{}/layer.tar", diff_id.trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": [image.name], "Layers": [layer_name]}]))
        .expect("JSON values serialize");
    let mut out = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&part).map_err(io)?));
    for (name, data) in [(layer_name.as_str(), &layer[..]), (config_name.as_str(), &config[..]), ("manifest.json", &manifest[..])] {
        append_bytes(&mut out, name, data, 0o644).map_err(io)?;
    }
    out.into_inner().map_err(io)?.flush().map_err(io)?;
    std::fs::rename(&part, path).map_err(io)?;
    Ok(())
}

/// The layer: every file with its parent directories, owned by root, timestamps zero.
fn layer_tar(files: &[(String, PathBuf, u32)]) -> std::io::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (at, from, mode) in files {
        let at = at.trim_start_matches('/');
        let mut parent = Path::new(at).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(0);
                layer.append_data(&mut h, format!("{}/", dir.display()), std::io::empty())?;
            }
        }
        let data = std::fs::read(from)?;
        append_bytes(&mut layer, at, &data, *mode)?;
    }
    layer.into_inner()
}

fn append_bytes<W: Write>(out: &mut tar::Builder<W>, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    out.append_data(&mut h, name, data)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `path` is a tar holding an image: a `manifest.json` (docker save) or an
/// `index.json` (OCI layout). Reads headers only; the data is skipped over.
pub fn check_image_archive(path: &Path) -> Result<(), NodeImageError> {
    let bad = |reason: String| NodeImageError::NotAnImageArchive { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive.entries().map_err(|e| bad(format!("not a tar file: {e}")))?;
    let mut seen_any = false;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("not a tar file: {e}")))?;
        seen_any = true;
        let name = entry.path().map_err(|e| bad(e.to_string()))?.to_string_lossy().into_owned();
        if name == "manifest.json" || name == "index.json" || name == "./manifest.json" || name == "./index.json" {
            return Ok(());
        }
    }
    Err(bad(if seen_any { "no manifest.json or index.json inside".into() } else { "not a tar file, or empty".into() }))
}

/// Copies the `docker save` archive `src` to `dst` with its image names replaced as `renames`
/// says (`repo:tag` → `repo:tag`): `manifest.json`'s RepoTags, the legacy `repositories` file,
/// and an OCI `index.json`'s name annotations. So a build can commit under names of its own
/// and still ship the canonical ones: two builds at once never save each other's images.
pub fn retag(src: &Path, dst: &Path, renames: &[(&str, &str)]) -> Result<(), NodeImageError> {
    let io = |e: std::io::Error| NodeImageError::Io { context: format!("renaming the images in {}", src.display()), source: e };
    let renamed = |name: &str| renames.iter().find(|(from, _)| *from == name).map_or(name.to_string(), |(_, to)| to.to_string());
    // `localhost:5000/node` is a repository without a tag, not `localhost` tagged `5000/node`.
    let split = |name: &str| -> (String, String) {
        crate::image_ref::ImageRef::parse(name).map(|r| r.repo_and_tag()).unwrap_or_else(|_| (name.to_string(), "latest".to_string()))
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(src).map_err(io)?));
    let mut out = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(dst).map_err(io)?));
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().trim_start_matches("./").to_string();
        let mut header = entry.header().clone();
        let rewrite = |text: &[u8]| -> Option<Vec<u8>> {
            let mut doc: serde_json::Value = serde_json::from_slice(text).ok()?;
            match path.as_str() {
                "manifest.json" => {
                    for m in doc.as_array_mut()? {
                        let tags: Vec<String> =
                            m["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).map(&renamed).collect();
                        m["RepoTags"] = serde_json::json!(tags);
                    }
                }
                "repositories" => {
                    let mut out = serde_json::Map::new();
                    for (repo, tags) in doc.as_object()? {
                        for (tag, id) in tags.as_object()? {
                            let (repo, tag) = split(&renamed(&format!("{repo}:{tag}")));
                            let entry = out.entry(repo).or_insert_with(|| serde_json::json!({}));
                            entry.as_object_mut()?.insert(tag, id.clone());
                        }
                    }
                    doc = serde_json::Value::Object(out);
                }
                "index.json" => {
                    for m in doc.get_mut("manifests")?.as_array_mut()? {
                        let Some(a) = m.get_mut("annotations").and_then(|a| a.as_object_mut()) else { continue };
                        let Some(old) = a.get("io.containerd.image.name").and_then(|n| n.as_str()).map(str::to_string) else { continue };
                        let new = renamed(&old);
                        if a.contains_key("org.opencontainers.image.ref.name") {
                            a.insert("org.opencontainers.image.ref.name".into(), split(&new).1.into());
                        }
                        a.insert("io.containerd.image.name".into(), new.into());
                    }
                }
                _ => return None,
            }
            serde_json::to_vec(&doc).ok()
        };
        if matches!(path.as_str(), "manifest.json" | "repositories" | "index.json") {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut text).map_err(io)?;
            let text = rewrite(&text).unwrap_or(text);
            header.set_size(text.len() as u64);
            header.set_cksum();
            out.append_data(&mut header, &path, &text[..]).map_err(io)?;
        } else {
            out.append(&header, &mut entry).map_err(io)?;
        }
    }
    out.into_inner().map_err(io)?.into_inner().map_err(|e| io(e.into_error()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(names: &[&str]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(file.reopen().unwrap());
        for n in names {
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_cksum();
            b.append_data(&mut h, n, &b"{}"[..]).unwrap();
        }
        b.finish().unwrap();
        file
    }

    #[test]
    fn retag_renames_the_image_and_keeps_the_layers() {
        let src = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(src.reopen().unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add("abc/layer.tar", b"layer-bytes");
        add(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["berth.dev/netd:build-1"],"Layers":["abc/layer.tar"]},{"Config":"d.json","RepoTags":["berth.dev/proxy:build-1"],"Layers":["abc/layer.tar"]}]"#,
        );
        add(
            "repositories",
            br#"{"berth.dev/netd":{"build-1":"abc"},"berth.dev/proxy":{"build-1":"def"},"berth.dev/reg":{"build-1":"fed"}}"#,
        );
        b.finish().unwrap();
        let dst = tempfile::NamedTempFile::new().unwrap();
        let renames = [
            ("berth.dev/netd:build-1", "berth.dev/netd:v1"),
            ("berth.dev/proxy:build-1", "registry.k8s.io/kube-proxy:v1.37.2"),
            // A registry with a port and no tag: the colon is the port's.
            ("berth.dev/reg:build-1", "localhost:5000/reg"),
        ];
        retag(src.path(), dst.path(), &renames).unwrap();
        let mut files = std::collections::BTreeMap::new();
        for e in tar::Archive::new(std::fs::File::open(dst.path()).unwrap()).entries().unwrap() {
            let mut e = e.unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            files.insert(e.path().unwrap().to_string_lossy().into_owned(), text);
        }
        assert_eq!(files["abc/layer.tar"], "layer-bytes");
        let manifest: serde_json::Value = serde_json::from_str(&files["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["berth.dev/netd:v1"]));
        assert_eq!(manifest[1]["RepoTags"], serde_json::json!(["registry.k8s.io/kube-proxy:v1.37.2"]));
        assert_eq!(manifest[0]["Layers"], serde_json::json!(["abc/layer.tar"]));
        let repos: serde_json::Value = serde_json::from_str(&files["repositories"]).unwrap();
        assert_eq!(
            repos,
            serde_json::json!({"berth.dev/netd": {"v1": "abc"}, "registry.k8s.io/kube-proxy": {"v1.37.2": "def"}, "localhost:5000/reg": {"latest": "fed"}})
        );
    }

    #[test]
    fn a_simple_image_is_a_docker_save_archive_with_its_files_and_entrypoint() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("etcd");
        std::fs::write(&bin, b"#!binary").unwrap();
        let image = SimpleImage {
            name: "registry.k8s.io/etcd:3.7.0-0".into(),
            files: vec![("/usr/local/bin/etcd".into(), bin, 0o755)],
            env: vec!["PATH=/usr/local/bin".into()],
            entrypoint: vec!["/usr/local/bin/etcd".into()],
            user: None,
            created: Some("2026-10-27T12:01:04Z".into()),
        };
        let path = dir.path().join("etcd.tar");
        write_simple_image(&image, &path).unwrap();
        check_image_archive(&path).unwrap();
        let mut files = std::collections::BTreeMap::new();
        for e in tar::Archive::new(std::fs::File::open(&path).unwrap()).entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            files.insert(e.path().unwrap().to_string_lossy().into_owned(), data);
        }
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["registry.k8s.io/etcd:3.7.0-0"]));
        let config: serde_json::Value = serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap();
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/etcd"]));
        assert_eq!(config["os"], "linux");
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        let layer = &files[layer_name];
        assert_eq!(format!("sha256:{}", hex(&Sha256::digest(layer))), config["rootfs"]["diff_ids"][0], "the diff id is the layer's hash");
        let mut inside = Vec::new();
        for e in tar::Archive::new(&layer[..]).entries().unwrap() {
            let e = e.unwrap();
            inside.push((e.path().unwrap().to_string_lossy().into_owned(), e.header().mode().unwrap()));
        }
        assert_eq!(
            inside,
            [("usr/".into(), 0o755), ("usr/local/".into(), 0o755), ("usr/local/bin/".into(), 0o755), ("usr/local/bin/etcd".into(), 0o755)]
        );
        let again = dir.path().join("again.tar");
        write_simple_image(&image, &again).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&again).unwrap(), "the same inputs give the same archive");
        assert!(!dir.path().join("etcd.tar.part").exists());
    }

    #[test]
    fn accepts_docker_save_and_oci_layouts() {
        assert!(check_image_archive(tar_with(&["abc/layer.tar", "manifest.json"]).path()).is_ok());
        assert!(check_image_archive(tar_with(&["oci-layout", "index.json"]).path()).is_ok());
    }

    #[test]
    fn rejects_other_tars_and_non_tars() {
        let err = check_image_archive(tar_with(&["hello.txt"]).path()).unwrap_err().to_string();
        assert!(err.contains("no manifest.json"), "{err}");
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), b"this is not a tar archive at all, just text").unwrap();
        assert!(check_image_archive(junk.path()).is_err());
    }
}
