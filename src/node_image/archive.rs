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
