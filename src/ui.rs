//! What the user sees: one line per step, a spinner while it runs on a terminal, plain lines
//! otherwise; and the verbosity of debug logs (tracing), which go to stderr apart from this.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the steps of a long operation.
#[derive(Clone)]
pub struct Status {
    quiet: bool,
    fancy: bool,
}

impl Status {
    pub fn new(quiet: bool) -> Status {
        Status { quiet, fancy: std::io::stderr().is_terminal() && std::env::var_os("BERTH_PLAIN").is_none() }
    }

    pub fn quiet() -> Status {
        Status { quiet: true, fancy: false }
    }

    /// Starts a step; finish it with [`Step::done`] or let it drop (counts as failed).
    pub fn step(&self, title: impl Into<String>) -> Step {
        let title = title.into();
        let bar = if self.quiet {
            None
        } else if self.fancy {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template(" {spinner} {msg} ({elapsed})").expect("valid template"));
            bar.set_message(title.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            eprintln!(" • {title} ...");
            None
        };
        tracing::debug!("step started: {title}");
        Step { title, bar, started: Instant::now(), finished: false, quiet: self.quiet, plain_tenths: Default::default() }
    }

    /// A line for the user, e.g. the final "use kubectl --context ..." hint.
    pub fn info(&self, message: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", message.as_ref());
        }
    }

    /// Warnings are printed even with --quiet: they say something is not as the user expects.
    pub fn warn(&self, message: impl AsRef<str>) {
        eprintln!("WARNING: {}", message.as_ref());
    }
}

pub struct Step {
    title: String,
    bar: Option<ProgressBar>,
    started: Instant,
    finished: bool,
    quiet: bool,
    /// On plain output, the last tenth of the work reported, so a long step says how far it
    /// got a few times rather than once per item.
    plain_tenths: std::sync::atomic::AtomicU64,
}

impl Step {
    pub fn set_detail(&self, detail: impl AsRef<str>) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} · {}", self.title, detail.as_ref()));
        }
    }

    /// Turns the spinner into a bar: `done` of `total` items, the latest named in `detail`.
    /// Without a terminal, a line at every tenth of the way.
    pub fn set_progress(&self, done: u64, total: u64, detail: &str) {
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total) {
                bar.set_style(
                    ProgressStyle::with_template(" {spinner} {prefix} [{bar:25}] {pos}/{len} {wide_msg} ({elapsed})")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(self.title.clone());
                bar.set_length(total);
            }
            bar.set_position(done);
            bar.set_message(detail.to_string());
        } else if !self.quiet && total > 0 {
            let tenths = done * 10 / total;
            let before = self.plain_tenths.fetch_max(tenths, std::sync::atomic::Ordering::Relaxed);
            if tenths > before {
                eprintln!("   {} {}% ({done}/{total})", self.title, tenths * 10);
            }
        }
    }

    pub fn done(mut self) -> Duration {
        self.finish(true)
    }

    fn finish(&mut self, ok: bool) -> Duration {
        self.finished = true;
        let took = self.started.elapsed();
        let mark = if ok { "✓" } else { "✗" };
        let line = format!(" {mark} {} ({:.1}s)", self.title, took.as_secs_f64());
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!("{line}");
        }
        tracing::info!(step = %self.title, seconds = took.as_secs_f64(), ok, "step finished");
        took
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(false);
        }
    }
}

/// Sets up debug logging: `-v` steps and timings, `-vv` what berth does, `-vvv` everything,
/// including kubeadm's output. `RUST_LOG` overrides.
pub fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => "berth=warn",
        1 => "berth=info",
        2 => "berth=debug",
        _ => "berth=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
