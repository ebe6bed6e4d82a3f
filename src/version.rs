//! Kubernetes versions as berth reads them: from a node image's `/kind/version`, an image tag or
//! the command line. A leaf: kubeadm's config, node-image builds and the cluster all compare
//! versions, and none of them should have to reach into another to do it.

/// A Kubernetes version, as read from the node image's /kind/version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// Text that is not a Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kubernetes version berth can read (expected e.g. v1.37.2 in /kind/version)")]
pub struct BadVersion(pub String);

impl KubeVersion {
    /// Accepts `v1.37.2` or `1.37.2`, with or without a pre-release or build suffix.
    pub fn parse(raw: &str) -> Result<KubeVersion, BadVersion> {
        let bad = || BadVersion(raw.trim().to_string());
        let core = raw.trim().trim_start_matches('v').split(['-', '+']).next().ok_or_else(bad)?;
        let mut it = core.split('.').map(|p| p.parse::<u32>().map_err(|_| bad()));
        let v = KubeVersion { major: it.next().ok_or_else(bad)??, minor: it.next().ok_or_else(bad)??, patch: it.next().ok_or_else(bad)?? };
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    /// Whether this is `major.minor` or later, whatever the patch release.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_or_without_v_and_suffixes() {
        let v = KubeVersion { major: 1, minor: 37, patch: 2 };
        assert_eq!(KubeVersion::parse("v1.37.2\n"), Ok(v));
        assert_eq!(KubeVersion::parse("1.37.2-rc.1+abc"), Ok(v));
        assert_eq!(v.to_string(), "v1.37.2");
        assert!(v.at_least(1, 37) && v.at_least(1, 36) && !v.at_least(1, 38));
        for bad in ["", "v1.37", "v1.37.2.1", "latest", "v1.x.2"] {
            assert_eq!(KubeVersion::parse(bad), Err(BadVersion(bad.to_string())), "{bad:?}");
        }
    }
}
