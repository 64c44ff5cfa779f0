//! Progress bars for the slow parts of packing (LZMA of a large closure,
//! `--trace`, gzipping an image layer), which can take from seconds to minutes
//! with no other sign of life.
//!
//! Library code only creates a [`Progress`] and reports work done; whether
//! anything is drawn is decided once, by the command line ([`enable`]):
//! never unless stderr is a terminal and `--quiet` was not given, and never
//! for work that ends within [`DELAY`] (a bar that flashes for a tenth of a
//! second is noise). Off by default, so library users and tests see nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long work runs before its bar appears; `ELFPACK_PROGRESS_AFTER_MS`
/// overrides it (tests use 0 to see a bar on quick work).
pub const DELAY: Duration = Duration::from_secs(1);

/// Lets bars be drawn on stderr from now on. Called by the command line with
/// `!quiet && stderr is a terminal`.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// One piece of long work. Drawn only when enabled and still running after
/// [`DELAY`]; cleared from the terminal when dropped.
pub struct Progress {
    shown: Option<Shown>,
}

struct Shown {
    bar: ProgressBar,
    /// Dropping the sender wakes the thread that would reveal the bar.
    done: Option<mpsc::Sender<()>>,
    reveal: Option<JoinHandle<()>>,
}

impl Progress {
    /// Work of `total` bytes, reported with [`Progress::inc`].
    pub fn bytes(what: &str, total: u64) -> Self {
        Self::start(what, Some(total))
    }

    /// Work of unknown length (a traced run): a spinner and the elapsed time.
    pub fn spinner(what: &str) -> Self {
        Self::start(what, None)
    }

    /// Nothing drawn, whatever [`enable`] said.
    pub fn hidden() -> Self {
        Progress { shown: None }
    }

    fn start(what: &str, total: Option<u64>) -> Self {
        if !ENABLED.load(Ordering::Relaxed) {
            return Self::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden())
                .with_style(
                    ProgressStyle::with_template(
                        "elfpack: {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()).with_style(
                ProgressStyle::with_template("elfpack: {spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(what.to_string());
        let delay = std::env::var("ELFPACK_PROGRESS_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DELAY, Duration::from_millis);
        let (done, wait) = mpsc::channel::<()>();
        let b = bar.clone();
        let reveal = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(delay) {
                b.set_draw_target(ProgressDrawTarget::stderr());
                b.tick();
                b.enable_steady_tick(Duration::from_millis(100));
            }
        });
        Progress {
            shown: Some(Shown {
                bar,
                done: Some(done),
                reveal: Some(reveal),
            }),
        }
    }

    /// `n` more bytes done (callable from several threads through `&self`).
    pub fn inc(&self, n: u64) {
        if let Some(s) = &self.shown {
            s.bar.inc(n);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(s) = &mut self.shown {
            drop(s.done.take());
            if let Some(t) = s.reveal.take() {
                let _ = t.join();
            }
            s.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_progress_is_inert() {
        enable(false);
        let p = Progress::bytes("x", 10);
        assert!(p.shown.is_none());
        p.inc(5);
        assert!(Progress::spinner("y").shown.is_none());
    }
}
