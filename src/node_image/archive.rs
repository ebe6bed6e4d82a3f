//! Image archives: the `docker save` / OCI tar files `build node-image` preloads.

use std::path::Path;

use super::NodeImageError;

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

/// Copies the `docker save` archive `src` to `dst` with every image name in it replaced by
/// `name` (`repo:tag`): `manifest.json`'s RepoTags, the legacy `repositories` file, and an OCI
/// `index.json`'s name annotations. So a build can commit under a name of its own and still
/// ship the canonical one: two builds at once never save each other's image.
pub fn retag(src: &Path, dst: &Path, name: &str) -> Result<(), NodeImageError> {
    let io = |e: std::io::Error| NodeImageError::Io { context: format!("renaming the image in {}", src.display()), source: e };
    let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(src).map_err(io)?));
    let mut out = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(dst).map_err(io)?));
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().trim_start_matches("./").to_string();
        let mut header = entry.header().clone();
        let rewrite = |text: &[u8]| -> Option<Vec<u8>> {
            let mut doc: serde_json::Value = serde_json::from_slice(text).ok()?;
            match path.as_str() {
                "manifest.json" => doc.as_array_mut()?.iter_mut().for_each(|m| m["RepoTags"] = serde_json::json!([name])),
                "repositories" => {
                    let id = doc.as_object()?.values().next()?.as_object()?.values().next()?.clone();
                    doc = serde_json::json!({ repo: { tag: id } });
                }
                "index.json" => {
                    for m in doc.get_mut("manifests")?.as_array_mut()? {
                        if let Some(a) = m.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                            for key in ["io.containerd.image.name", "org.opencontainers.image.ref.name"] {
                                if a.contains_key(key) {
                                    let value = if key == "io.containerd.image.name" { name.to_string() } else { tag.to_string() };
                                    a.insert(key.into(), value.into());
                                }
                            }
                        }
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
        add("manifest.json", br#"[{"Config":"c.json","RepoTags":["berth.dev/netd:build-1"],"Layers":["abc/layer.tar"]}]"#);
        add("repositories", br#"{"berth.dev/netd":{"build-1":"abc"}}"#);
        b.finish().unwrap();
        let dst = tempfile::NamedTempFile::new().unwrap();
        retag(src.path(), dst.path(), "berth.dev/netd:v1").unwrap();
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
        assert_eq!(manifest[0]["Layers"], serde_json::json!(["abc/layer.tar"]));
        let repos: serde_json::Value = serde_json::from_str(&files["repositories"]).unwrap();
        assert_eq!(repos, serde_json::json!({"berth.dev/netd": {"v1": "abc"}}));
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
