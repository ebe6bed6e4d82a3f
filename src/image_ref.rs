//! Container image references, parsed once by the distribution grammar (`oci-spec`, the
//! parser youki's crates use): registry host with or without port, Docker Hub's implicit
//! `docker.io` and `library/`, tag, digest, or both. Every place that needs a part of a
//! reference — pulling, naming an image as containerd does, finding the registry for
//! credentials — asks this type instead of splitting strings.

use std::fmt;

use oci_spec::distribution::Reference;

#[derive(Debug, thiserror::Error)]
#[error("{reference:?} is not a valid image reference ({reason}); expected e.g. registry.example:5000/team/app:v1 or app@sha256:<64 hex digits>")]
pub struct ImageRefError {
    pub reference: String,
    pub reason: String,
}

/// A parsed image reference, remembering how the user spelled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    original: String,
    parsed: Reference,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Result<ImageRef, ImageRefError> {
        let parsed =
            Reference::try_from(reference).map_err(|e| ImageRefError { reference: reference.to_string(), reason: e.to_string() })?;
        // The grammar's own rule, which the parser leaves to its callers (as Docker's does).
        if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ImageRefError { reference: reference.to_string(), reason: "repository name must be lowercase".into() });
        }
        Ok(ImageRef { original: reference.to_string(), parsed })
    }

    /// The registry host (with port), `docker.io` where the reference names none.
    pub fn registry(&self) -> &str {
        self.parsed.registry()
    }

    /// The repository within the registry, `library/` included for Docker Hub's official images.
    pub fn repository(&self) -> &str {
        self.parsed.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.parsed.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.parsed.digest()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// What Docker's pull API takes: the image name and, in its `tag` parameter, the digest
    /// when there is one (the daemon then pulls by digest and checks the content against it;
    /// a tag beside a digest is informational, as in `docker pull`), else the tag.
    pub fn docker_pull_params(&self) -> (String, String) {
        let tag = self.digest().or(self.tag()).unwrap_or("latest");
        (self.name(), tag.to_string())
    }

    /// The name containerd gives the image: fully qualified, by digest when there is one
    /// (containerd drops a tag that stands beside a digest), else by tag.
    pub fn containerd_name(&self) -> String {
        match (self.digest(), self.tag()) {
            (Some(digest), _) => format!("{}@{digest}", self.name()),
            (None, tag) => format!("{}:{}", self.name(), tag.unwrap_or("latest")),
        }
    }

    /// `registry/repository@digest`, as Docker lists it among an image's RepoDigests.
    pub fn canonical(&self) -> Option<String> {
        self.digest().map(|d| format!("{}@{d}", self.name()))
    }

    /// The repository as the user spelled it, and the tag (`latest` when none): what Docker's
    /// commit and tag APIs take. An image pinned only by digest has no tag to commit to.
    pub fn repo_and_tag(&self) -> (String, String) {
        let without_digest = self.original.split('@').next().unwrap_or(&self.original);
        match self.tag().filter(|t| without_digest.ends_with(&format!(":{t}"))) {
            Some(tag) => (without_digest[..without_digest.len() - tag.len() - 1].to_string(), tag.to_string()),
            None => (without_digest.to_string(), "latest".to_string()),
        }
    }

    /// The version in the tag when it reads like one (`kindest/node:v1.32.2` → `v1.32.2`).
    pub fn tag_version(&self) -> Option<&str> {
        self.tag().filter(|t| t.starts_with('v') && t[1..].split('.').count() >= 2)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// Whether a RepoDigests entry (as Docker reports it, e.g. `kindest/node@sha256:…` for Hub
/// images) names the same repository and digest as `reference`.
pub fn repo_digest_matches(reference: &ImageRef, repo_digest: &str) -> bool {
    match (ImageRef::parse(repo_digest), reference.canonical()) {
        (Ok(listed), Some(want)) => listed.canonical().as_deref() == Some(want.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5";
    /// The shape of berth's default node image (`cluster::DEFAULT_NODE_IMAGE`, which the
    /// cluster module's own test parses): a tag and a digest.
    const PINNED: &str = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5";

    #[test]
    fn the_pinned_default_is_pulled_by_its_digest() {
        let r = ImageRef::parse(PINNED).unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "kindest/node");
        assert_eq!(r.tag(), Some("v1.37.0"));
        assert_eq!(r.digest(), Some(DIGEST));
        assert_eq!(r.docker_pull_params(), ("docker.io/kindest/node".to_string(), DIGEST.to_string()));
        assert_eq!(r.tag_version(), Some("v1.37.0"));
        assert_eq!(r.to_string(), PINNED, "shown as the user wrote it");
    }

    #[test]
    fn odd_shapes() {
        let cases = [
            // reference, registry, repository, tag, digest
            ("busybox", "docker.io", "library/busybox", Some("latest"), None),
            ("registry:2", "docker.io", "library/registry", Some("2"), None),
            ("localhost:5001/app", "localhost:5001", "app", Some("latest"), None),
            ("127.0.0.1:5001/berth-test/node:v1.20.2", "127.0.0.1:5001", "berth-test/node", Some("v1.20.2"), None),
            ("localhost/x", "localhost", "x", Some("latest"), None),
            ("ghcr.io/a/b/c:1.0", "ghcr.io", "a/b/c", Some("1.0"), None),
            ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", Some("1"), None),
        ];
        for (s, registry, repository, tag, digest) in cases {
            let r = ImageRef::parse(s).unwrap();
            assert_eq!((r.registry(), r.repository(), r.tag(), r.digest()), (registry, repository, tag, digest), "{s}");
        }
        let both = ImageRef::parse(&format!("127.0.0.1:5001/berth-test/node:v1.20.2@{DIGEST}")).unwrap();
        assert_eq!(both.docker_pull_params(), ("127.0.0.1:5001/berth-test/node".to_string(), DIGEST.to_string()));
        assert_eq!(both.containerd_name(), format!("127.0.0.1:5001/berth-test/node@{DIGEST}"));
        let only_digest = ImageRef::parse(&format!("app@{DIGEST}")).unwrap();
        assert_eq!(only_digest.tag(), None);
        assert_eq!(only_digest.docker_pull_params().1, DIGEST);
    }

    #[test]
    fn containerd_names_are_fully_qualified() {
        let name = |s: &str| ImageRef::parse(s).unwrap().containerd_name();
        assert_eq!(name("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(name("berth-test/toolbox:1"), "docker.io/berth-test/toolbox:1");
        assert_eq!(name("localhost:5001/app:v2"), "localhost:5001/app:v2");
        assert_eq!(name("k8s.gcr.io/pause:3.2"), "k8s.gcr.io/pause:3.2");
        assert_eq!(name("registry.example/team/app"), "registry.example/team/app:latest");
    }

    #[test]
    fn repo_and_tag_keep_the_users_spelling() {
        let rt = |s: &str| ImageRef::parse(s).unwrap().repo_and_tag();
        assert_eq!(rt("berth-test/node:v1.20.2"), ("berth-test/node".into(), "v1.20.2".into()));
        assert_eq!(rt("localhost:5001/node"), ("localhost:5001/node".into(), "latest".into()));
        assert_eq!(rt("localhost:5001/node:v1"), ("localhost:5001/node".into(), "v1".into()));
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for bad in ["", "UPPER/case", "a:b:c", "app@sha256:1234", "app@md5:00", "with space"] {
            let err = ImageRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid image reference"), "{bad}: {err}");
        }
    }

    #[test]
    fn repo_digests_match_by_repository_and_digest() {
        let r = ImageRef::parse(PINNED).unwrap();
        assert!(repo_digest_matches(&r, &format!("kindest/node@{DIGEST}")));
        assert!(!repo_digest_matches(&r, &format!("other/node@{DIGEST}")));
        let other = DIGEST.replace("a1ed", "0000");
        assert!(!repo_digest_matches(&r, &format!("kindest/node@{other}")));
    }
}
