//! Go programs built from their modules with the local Go toolchain, the ordinary way: a
//! wrapper module of berth's own that requires the program's module at the asked version (plus
//! any `replace` lines the program's own go.mod needs but a dependency cannot carry), `go mod
//! tidy`, then one `go build` of the program's packages.
//!
//! This module owns the go commands, their progress and their errors, and the build cache:
//! binaries live under berth's cache directory, keyed by program, version, Go version and how
//! they are built, and land there whole — built into a `.part` directory that is renamed once
//! everything is in it — so a failed or interrupted build leaves nothing a later one trusts.
//! Go's own module and build caches (`go env GOMODCACHE GOCACHE`) are the user's, as any go
//! command would use them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::NodeImageError;
use crate::ui::Step;

type Result<T, E = NodeImageError> = std::result::Result<T, E>;

/// Bumped when what a cached build contains changes for the same inputs (build flags, layout).
const RECIPE: &str = "berth-go-build-1";

/// The Go toolchain berth drives: `$BERTH_GO`, else `go` on PATH.
#[derive(Debug, Clone)]
pub struct Go {
    path: PathBuf,
    /// `go env GOVERSION`, e.g. `go1.26.8`: part of every cache key.
    pub version: String,
}

impl Go {
    pub async fn find() -> Result<Go> {
        let path = std::env::var_os("BERTH_GO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("go"));
        let out = tokio::process::Command::new(&path).args(["env", "GOVERSION"]).kill_on_drop(true).output().await;
        match out {
            Ok(out) if out.status.success() => Ok(Go { path, version: String::from_utf8_lossy(&out.stdout).trim().to_string() }),
            Ok(out) => Err(NodeImageError::GoMissing {
                go: path.display().to_string(),
                reason: last_lines(&String::from_utf8_lossy(&out.stderr), 3),
            }),
            Err(e) => Err(NodeImageError::GoMissing { go: path.display().to_string(), reason: e.to_string() }),
        }
    }

    fn command(&self, dir: &Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.path);
        // The wrapper module is berth's: no workspace of the user's applies to it, and a go.mod
        // naming a newer Go fetches that toolchain only where the user's settings allow it.
        c.current_dir(dir).env("GOWORK", "off").env("GOFLAGS", "-mod=mod");
        // A group of its own, so berth alone gets the terminal's Ctrl-C and stops go and the
        // compilers it runs together ([`Group`]).
        c.process_group(0);
        c
    }

    fn spawn(&self, c: &mut tokio::process::Command) -> Result<(tokio::process::Child, Group)> {
        let child = c.spawn().map_err(|e| NodeImageError::GoMissing { go: self.path.display().to_string(), reason: e.to_string() })?;
        let group = Group(child.id().map(|id| id as i32));
        Ok((child, group))
    }

    /// Runs a go command in `dir`; on failure the error names `what` and carries go's last lines.
    async fn run(&self, dir: &Path, what: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
        let mut c = self.command(dir);
        c.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        tracing::debug!("{}: go {}", dir.display(), args.join(" "));
        let (child, _group) = self.spawn(&mut c)?;
        let out = child.wait_with_output().await.map_err(|e| super::io_err(format!("waiting for go {}", args.join(" ")), e))?;
        if !out.status.success() {
            let tail = last_lines(&String::from_utf8_lossy(&out.stderr), 15);
            return Err(NodeImageError::GoFailed { what: what.to_string(), tail });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Fetches `module@version` into Go's module cache and returns where it lies and its go.mod.
    /// A version the proxy does not serve is [`NodeImageError::UnservedVersion`].
    pub async fn download(&self, scratch: &Path, module: &str, version: &str) -> Result<Downloaded> {
        std::fs::create_dir_all(scratch).map_err(|e| super::io_err(format!("creating {}", scratch.display()), e))?;
        let at = format!("{module}@{version}");
        let mut c = self.command(scratch);
        c.args(["mod", "download", "-json", &at]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let (child, _group) = self.spawn(&mut c)?;
        let out = child.wait_with_output().await.map_err(|e| super::io_err(format!("waiting for go mod download {at}"), e))?;
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(reason) = info.get("Error").and_then(|e| e.as_str()) {
            return Err(NodeImageError::UnservedVersion { module: module.into(), version: version.into(), reason: reason.into() });
        }
        if !out.status.success() {
            let reason = last_lines(&String::from_utf8_lossy(&out.stderr), 3);
            return Err(NodeImageError::UnservedVersion { module: module.into(), version: version.into(), reason });
        }
        let field = |name: &str| info.get(name).and_then(|v| v.as_str()).map(str::to_string).unwrap_or_default();
        let go_mod = std::fs::read_to_string(field("GoMod")).map_err(|e| super::io_err(format!("reading the go.mod of {at}"), e))?;
        let time = std::fs::read_to_string(field("Info"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|t| t.get("Time").and_then(|t| t.as_str()).map(str::to_string));
        Ok(Downloaded { dir: PathBuf::from(field("Dir")), go_mod, time })
    }
}

/// A go command's process group, killed whole when this is dropped: on success it is gone
/// already; on failure, or when an interrupt drops the build, go and the compilers and linker it
/// runs stop at once instead of finishing work nobody will use.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals the group this process made for go.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// A module in Go's module cache.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The module's unpacked source (read-only).
    pub dir: PathBuf,
    /// Its go.mod.
    pub go_mod: String,
    /// When the version was published, from the proxy (RFC 3339).
    pub time: Option<String>,
}

/// A Go program to build: which module, which commands in it, and how.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Names the cache entry and the wrapper module (`kubernetes`, `etcd`).
    pub name: String,
    pub module: String,
    pub version: String,
    /// `require` lines besides the module's own (module, version).
    pub requires: Vec<(String, String)>,
    /// `replace` lines: (module, replacement module version), e.g. Kubernetes' staging modules.
    pub replaces: Vec<(String, String)>,
    /// The command packages, and the file name each binary gets.
    pub commands: Vec<(String, String)>,
    pub tags: Vec<String>,
    /// `-X` settings (`importpath.name=value`).
    pub x_flags: Vec<String>,
    /// Whether cgo is on (a C toolchain is then needed).
    pub cgo: bool,
}

impl Program {
    fn key(&self, go: &Go) -> String {
        let mut h = Sha256::new();
        for part in [RECIPE, &go.version, &self.module, &self.version, &self.tags.join(","), &self.x_flags.join(" ")] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for (a, b) in self.requires.iter().chain(&self.replaces).chain(&self.commands) {
            h.update(format!("{a}={b}\0").as_bytes());
        }
        h.update([u8::from(self.cgo)]);
        let hex: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{hex}", self.name, self.version)
    }

    fn go_mod(&self, go_directive: &str) -> String {
        let mut text = format!("module berth.build/{}\n\ngo {go_directive}\n\nrequire {} {}\n", self.name, self.module, self.version);
        for (m, v) in &self.requires {
            text.push_str(&format!("require {m} {v}\n"));
        }
        for (m, v) in &self.replaces {
            text.push_str(&format!("replace {m} => {m} {v}\n"));
        }
        text
    }

    /// A file that imports every command, so `go mod tidy` records their dependencies; the
    /// build tag keeps it out of every build (commands are not importable packages).
    fn tools_go(&self) -> String {
        let imports: String = self.commands.iter().map(|(pkg, _)| format!("\t_ \"{pkg}\"\n")).collect();
        format!("//go:build tools\n\npackage tools\n\nimport (\n{imports})\n")
    }
}

/// Where berth keeps what it builds: `$BERTH_CACHE_DIR`, else the user's cache directory
/// (`$XDG_CACHE_HOME/berth`, `~/.cache/berth`).
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    directories::BaseDirs::new().map(|b| b.cache_dir().join("berth")).unwrap_or_else(|| std::env::temp_dir().join("berth-cache"))
}

/// Builds `program` (or finds it built) and returns the directory holding its binaries.
/// `go_directive` is the `go` line of the wrapper module (the program's own minimum).
pub async fn build(go: &Go, program: &Program, go_directive: &str, step: &Step) -> Result<PathBuf> {
    build_in(&cache_root(), go, program, go_directive, step).await
}

async fn build_in(cache: &Path, go: &Go, program: &Program, go_directive: &str, step: &Step) -> Result<PathBuf> {
    let root = cache.join("go").join(program.key(go));
    let bin = root.join("bin");
    if bin.join(".complete").is_file() {
        tracing::info!("{} {}: built before, in {}", program.name, program.version, bin.display());
        return Ok(bin);
    }
    let io = |what: String| move |e| super::io_err(what, e);
    let work = root.join("module");
    let part = root.join("bin.part");
    for dir in [&work, &part] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(format!("clearing {}", dir.display())))?;
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(work.join("go.mod"), program.go_mod(go_directive)).map_err(io("writing go.mod".to_string()))?;
    std::fs::write(work.join("tools.go"), program.tools_go()).map_err(io("writing tools.go".to_string()))?;

    step.set_detail(format!("{}: resolving modules", program.name));
    go.run(&work, &format!("resolving the modules of {} {}", program.module, program.version), &["mod", "tidy"], &[]).await?;

    let cgo = if program.cgo { "1" } else { "0" };
    let env = [("CGO_ENABLED", cgo)];
    let packages: Vec<&str> = program.commands.iter().map(|(p, _)| p.as_str()).collect();
    let tags = program.tags.join(",");
    let ldflags = format!("-s -w {}", program.x_flags.iter().map(|x| format!("-X {x}")).collect::<Vec<_>>().join(" "));

    let mut list_args = vec!["list", "-deps", "-tags", &tags, "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"];
    list_args.extend(&packages);
    let total = go.run(&work, "listing packages", &list_args, &env).await?.lines().filter(|l| !l.is_empty()).count();

    let out_dir = format!("{}/", part.display());
    let mut args = vec!["build", "-v", "-trimpath", "-tags", &tags, "-ldflags", &ldflags, "-o", &out_dir];
    args.extend(&packages);
    compile(go, &work, &args, &env, program, total, step).await?;

    for (pkg, name) in &program.commands {
        let produced = part.join(default_binary_name(pkg));
        let wanted = part.join(name);
        if produced != wanted {
            std::fs::rename(&produced, &wanted).map_err(io(format!("naming the binary of {pkg} {name}")))?;
        }
    }
    std::fs::write(part.join(".complete"), format!("{} {} {}\n", program.module, program.version, go.version))
        .map_err(io("marking the build complete".to_string()))?;
    if bin.exists() {
        std::fs::remove_dir_all(&bin).map_err(io(format!("clearing {}", bin.display())))?;
    }
    std::fs::rename(&part, &bin).map_err(io(format!("moving the build into {}", bin.display())))?;
    Ok(bin)
}

/// `go build -v`, reporting each package compiled against `total` (packages found in the
/// build cache are not printed, so a warm build finishes early on the bar).
async fn compile(go: &Go, dir: &Path, args: &[&str], env: &[(&str, &str)], program: &Program, total: usize, step: &Step) -> Result<()> {
    let mut c = go.command(dir);
    c.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    tracing::debug!("{}: go {}", dir.display(), args.join(" "));
    let (mut child, _group) = go.spawn(&mut c)?;
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let mut seen = 0usize;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    while let Some(line) = lines.next_line().await.map_err(|e| super::io_err("reading go build's output", e))? {
        // -v names each package as it is compiled; anything else is a diagnostic.
        if !line.contains(' ') && !line.starts_with('#') {
            seen += 1;
            step.set_progress(seen.min(total) as u64, total as u64, &format!("{} {}", program.name, line));
        }
        tail.push_back(line);
        if tail.len() > 15 {
            tail.pop_front();
        }
    }
    let status = child.wait().await.map_err(|e| super::io_err("waiting for go build", e))?;
    if !status.success() {
        let tail: Vec<String> = tail.into_iter().filter(|l| l.contains(' ') || l.starts_with('#')).collect();
        return Err(NodeImageError::GoFailed { what: format!("compiling {} {}", program.module, program.version), tail: tail.join("\n") });
    }
    Ok(())
}

/// The file name `go build -o DIR/` gives a command: its import path's last element, or the
/// one before a major-version suffix (`go.etcd.io/etcd/server/v3` → `server`).
fn default_binary_name(pkg: &str) -> String {
    let mut parts = pkg.rsplit('/');
    let last = parts.next().unwrap_or(pkg);
    let is_major = last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    if is_major {
        parts.next().unwrap_or(last).to_string()
    } else {
        last.to_string()
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::Status;

    fn program() -> Program {
        Program {
            name: "etcd".into(),
            module: "go.etcd.io/etcd/server/v3".into(),
            version: "v3.7.0".into(),
            replaces: vec![("k8s.io/api".into(), "v0.37.2".into())],
            commands: vec![("go.etcd.io/etcd/server/v3".into(), "etcd".into())],
            ..Default::default()
        }
    }

    #[test]
    fn binaries_are_named_as_go_names_them() {
        assert_eq!(default_binary_name("k8s.io/kubernetes/cmd/kubeadm"), "kubeadm");
        assert_eq!(default_binary_name("go.etcd.io/etcd/server/v3"), "server");
        assert_eq!(default_binary_name("github.com/coredns/coredns"), "coredns");
        assert_eq!(default_binary_name("example.com/v"), "v");
    }

    #[test]
    fn the_wrapper_module_requires_the_program_and_replaces_by_module_version() {
        let text = program().go_mod("1.26");
        assert!(text.starts_with("module berth.build/etcd\n\ngo 1.26\n"), "{text}");
        assert!(text.contains("require go.etcd.io/etcd/server/v3 v3.7.0\n"), "{text}");
        assert!(text.contains("replace k8s.io/api => k8s.io/api v0.37.2\n"), "{text}");
        assert!(program().tools_go().contains("//go:build tools") && program().tools_go().contains("_ \"go.etcd.io/etcd/server/v3\""));
    }

    /// A stand-in for the go command: logs each call, builds empty binaries, fails the build
    /// while `$dir/fail` exists.
    const FAKE_GO: &str = r##"#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls"
case "$1" in
  env) echo go1.99.0 ;;
  mod|list) [ "$1" = list ] && printf 'example.com/cmd/a\nexample.com/cmd/b\n'; exit 0 ;;
  build)
    while [ "$1" != "-o" ]; do shift; done; out=$2; shift 2
    for pkg in "$@"; do echo "$pkg" >&2; done
    [ -e "$here/fail" ] && { echo "# example.com/cmd/b" >&2; echo "b.go:1: undefined: boom" >&2; exit 1; }
    for pkg in "$@"; do : > "$out/${pkg##*/}"; done ;;
esac
"##;

    #[tokio::test]
    async fn a_failed_build_is_never_taken_for_a_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("go");
        std::fs::write(&fake, FAKE_GO).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let go = Go { path: fake.clone(), version: "go1.99.0".into() };
        let program = Program {
            name: "demo".into(),
            module: "example.com".into(),
            version: "v1.0.0".into(),
            commands: vec![("example.com/cmd/a".into(), "a".into()), ("example.com/cmd/b".into(), "bee".into())],
            ..Default::default()
        };
        let cache = dir.path().join("cache");
        let step = Status::quiet().step("test");
        let builds = || std::fs::read_to_string(dir.path().join("calls")).unwrap().lines().filter(|l| l.starts_with("build")).count();

        std::fs::write(dir.path().join("fail"), "").unwrap();
        let err = build_in(&cache, &go, &program, "1.26", &step).await.unwrap_err();
        assert!(matches!(&err, NodeImageError::GoFailed { tail, .. } if tail.contains("undefined: boom")), "{err}");
        let entry = cache.join("go").join(program.key(&go));
        assert!(!entry.join("bin").exists(), "a failed build leaves no bin/");

        std::fs::remove_file(dir.path().join("fail")).unwrap();
        let bin = build_in(&cache, &go, &program, "1.26", &step).await.unwrap();
        assert_eq!(bin, entry.join("bin"));
        assert!(bin.join("a").is_file() && bin.join("bee").is_file() && bin.join(".complete").is_file(), "binaries named as asked");
        assert!(!entry.join("bin.part").exists());
        assert_eq!(builds(), 2);

        build_in(&cache, &go, &program, "1.26", &step).await.unwrap();
        assert_eq!(builds(), 2, "a finished build is reused, not redone");
        let module = std::fs::read_to_string(entry.join("module/go.mod")).unwrap();
        assert!(module.contains("require example.com v1.0.0"), "{module}");
    }

    #[test]
    fn the_cache_key_changes_with_every_input() {
        let go = Go { path: "go".into(), version: "go1.26.8".into() };
        let base = program().key(&go);
        assert!(base.starts_with("etcd-v3.7.0-"), "{base}");
        let newer_go = Go { version: "go1.27.0".into(), ..go.clone() };
        assert_ne!(program().key(&newer_go), base);
        let tagged = Program { tags: vec!["grpcnotrace".into()], ..program() };
        assert_ne!(tagged.key(&go), base);
        let stamped = Program { x_flags: vec!["a.b=c".into()], ..program() };
        assert_ne!(stamped.key(&go), base);
    }
}
