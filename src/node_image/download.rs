//! `--kube-version`: official release binaries and component image archives, fetched from a
//! base URL laid out like upstream's (`{base}/{version}/bin/linux/{arch}/{file}`), each checked
//! against the `.sha256` file published beside it.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{NodeImageError, REQUIRED_BINARIES};

/// Where upstream publishes release artifacts.
pub const DEFAULT_KUBE_BASE_URL: &str = "https://dl.k8s.io/release";

/// Component images upstream publishes as `docker save` archives next to the binaries.
const RELEASE_IMAGES: &[&str] = &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"];

/// Accepts `v1.20.2` or `1.20.2` (and pre-release suffixes); returns the `v`-prefixed form.
pub fn parse_version(raw: &str) -> Result<String, NodeImageError> {
    crate::version::KubeVersion::parse(raw)
        .map_err(|_| NodeImageError::BadVersion(format!("{raw:?} is not a Kubernetes version; use the form v1.20.2")))?;
    // The URL keeps a pre-release suffix (`-rc.1`) that the version's numbers do not.
    Ok(format!("v{}", raw.trim().trim_start_matches('v')))
}

/// Downloads binaries into `dest/bin` and image archives into `dest/images`; returns the
/// archive paths.
pub async fn fetch_release(base: &str, version: &str, arch: &str, dest: &Path) -> Result<Vec<PathBuf>, NodeImageError> {
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| NodeImageError::Download { url: base.into(), reason: e.to_string() })?;
    let root = format!("{}/{version}/bin/linux/{arch}", base.trim_end_matches('/'));
    let bin = dest.join("bin");
    let images = dest.join("images");
    for dir in [&bin, &images] {
        tokio::fs::create_dir_all(dir).await.map_err(|e| super::io_err(format!("creating {}", dir.display()), e))?;
    }
    // The first file tells whether the version exists at all; fail on it with a clear message.
    let mut jobs = Vec::new();
    for name in REQUIRED_BINARIES {
        jobs.push((format!("{root}/{name}"), bin.join(name)));
    }
    let mut archives = Vec::new();
    for name in RELEASE_IMAGES {
        let path = images.join(format!("{name}.tar"));
        jobs.push((format!("{root}/{name}.tar"), path.clone()));
        archives.push(path);
    }
    for (url, path) in &jobs {
        fetch_verified(&client, version, url, path).await?;
    }
    for path in &archives {
        super::check_image_archive(path)?;
    }
    Ok(archives)
}

async fn fetch_verified(client: &reqwest::Client, version: &str, url: &str, path: &Path) -> Result<(), NodeImageError> {
    let expected = fetch_text(client, version, &format!("{url}.sha256")).await?;
    let expected = expected.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    let actual = fetch_to_file(client, version, url, path).await?;
    if expected != actual {
        let _ = tokio::fs::remove_file(path).await;
        return Err(NodeImageError::Download { url: url.into(), reason: format!("sha256 is {actual}, but {url}.sha256 says {expected}") });
    }
    Ok(())
}

async fn get(client: &reqwest::Client, version: &str, url: &str) -> Result<reqwest::Response, NodeImageError> {
    let download = |reason: String| NodeImageError::Download { url: url.into(), reason };
    let resp = client.get(url).send().await.map_err(|e| download(e.to_string()))?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(NodeImageError::UnknownVersion { version: version.into(), url: url.into(), status });
    }
    if !resp.status().is_success() {
        return Err(download(format!("HTTP {status}")));
    }
    Ok(resp)
}

async fn fetch_text(client: &reqwest::Client, version: &str, url: &str) -> Result<String, NodeImageError> {
    get(client, version, url).await?.text().await.map_err(|e| NodeImageError::Download { url: url.into(), reason: e.to_string() })
}

/// Streams a download to `path` and returns its sha256 in hex.
async fn fetch_to_file(client: &reqwest::Client, version: &str, url: &str, path: &Path) -> Result<String, NodeImageError> {
    let resp = get(client, version, url).await?;
    let mut file = tokio::fs::File::create(path).await.map_err(|e| super::io_err(format!("creating {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| NodeImageError::Download { url: url.into(), reason: e.to_string() })?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| super::io_err(format!("writing {}", path.display()), e))?;
    }
    file.flush().await.map_err(|e| super::io_err(format!("writing {}", path.display()), e))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("v1.20.2").unwrap(), "v1.20.2");
        assert_eq!(parse_version("1.31.0").unwrap(), "v1.31.0");
        assert_eq!(parse_version("v1.32.0-rc.1").unwrap(), "v1.32.0-rc.1");
        for bad in ["", "latest", "v1.20", "v1.x.2", "1..2"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }
}
