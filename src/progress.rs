//! What the person running a probe sees on stderr while it runs.
//!
//! On a terminal: a live bar per step ("step 4: 18 workers [#####-----] 20/36 prompts
//! ok 20  429 0  failed 0") and a countdown spinner during a cooldown; each is replaced
//! by one plain line when it ends, so the scrollback keeps a record. Elsewhere (CI logs,
//! pipes, files): only plain lines, one when a step starts and one when it ends, so logs
//! stay readable and free of control codes.
//!
//! [`Progress`] knows nothing of the engine or the planner: its methods take plain
//! numbers, strings and the report's [`RunRecord`]. The probe calls them, and hands the
//! engine a callback that calls [`Progress::prompt_done`] per finished prompt. It is a
//! cheap handle (`Clone`, `Send`, `Sync`) so that callback can own a copy.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::report::RunRecord;

/// How one prompt of the running step ended, as the progress bar counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptOutcome {
    /// Answered.
    Ok,
    /// Refused by a rate limit.
    RateLimited,
    /// Failed for another reason, after its retries (or fatally).
    Failed,
}

/// The progress display of one probe. See the module documentation.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Where plain lines go: stderr, or a test's buffer.
    out: Box<dyn Write + Send>,
    /// Draw live widgets (bar, spinner); otherwise only plain lines.
    live: Option<Live>,
    /// The live widget on screen, if any.
    widget: Option<Widget>,
    counts: Counts,
}

struct Widget {
    bar: ProgressBar,
    /// The plain line that replaces the widget when it is cleared (a cooldown's), if any.
    leaves: Option<String>,
}

/// Where live widgets are drawn. Each widget needs its own draw target, so this says
/// how to make one.
#[derive(Clone, Copy)]
enum Live {
    Stderr,
    /// Drawn nowhere: tests of live mode.
    #[cfg(test)]
    Hidden,
}

impl Live {
    fn target(self) -> ProgressDrawTarget {
        match self {
            Live::Stderr => ProgressDrawTarget::stderr(),
            #[cfg(test)]
            Live::Hidden => ProgressDrawTarget::hidden(),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    ok: u32,
    rate_limited: u32,
    failed: u32,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok {}  429 {}  failed {}",
            self.ok, self.rate_limited, self.failed
        )
    }
}

impl Progress {
    /// Progress on stderr: live widgets when `is_terminal` (pass
    /// `std::io::stderr().is_terminal()`), plain lines otherwise.
    pub fn new(is_terminal: bool) -> Progress {
        let live = is_terminal.then_some(Live::Stderr);
        Progress::build(Box::new(io::stderr()), live)
    }

    /// Progress on stderr, live when stderr is a terminal.
    pub fn stderr() -> Progress {
        Progress::new(io::stderr().is_terminal())
    }

    /// Plain lines only, written to `out` (tests, logs).
    pub fn plain(out: Box<dyn Write + Send>) -> Progress {
        Progress::build(out, None)
    }

    fn build(out: Box<dyn Write + Send>, live: Option<Live>) -> Progress {
        Progress {
            inner: Arc::new(Mutex::new(Inner {
                out,
                live,
                widget: None,
                counts: Counts::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while drawing must not take the probe down with it: the state is just
        // counters and a handle, usable as it is.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Step `index` (0-based; shown 1-based) starts with `workers` workers and
    /// `prompts` prompts.
    pub fn step_started(&self, index: usize, workers: u32, prompts: u32) {
        let mut inner = self.lock();
        inner.clear_widget();
        inner.counts = Counts::default();
        let label = format!("step {}: {}", index + 1, crate::report::workers(workers));
        match inner.live {
            Some(live) => {
                let bar = ProgressBar::with_draw_target(Some(u64::from(prompts)), live.target())
                    .with_style(bar_style())
                    .with_prefix(label)
                    .with_message(Counts::default().to_string());
                // Redraw now and then even without news, so a step where nothing
                // answers for a while still shows it is alive.
                bar.enable_steady_tick(Duration::from_millis(250));
                inner.widget = Some(Widget { bar, leaves: None });
            }
            None => inner.line(&format!("{label}, {prompts} prompts")),
        }
    }

    /// The engine's per-prompt hook that counts into this display: what the probe installs.
    pub fn prompt_hook(&self) -> crate::engine::PromptHook {
        use crate::config::provider::Outcome;
        let progress = self.clone();
        crate::engine::PromptHook::new(move |o| {
            progress.prompt_done(match o {
                Outcome::Success => PromptOutcome::Ok,
                Outcome::RateLimited => PromptOutcome::RateLimited,
                Outcome::Transient | Outcome::Fatal => PromptOutcome::Failed,
            })
        })
    }

    /// One prompt of the running step finished.
    pub fn prompt_done(&self, outcome: PromptOutcome) {
        let mut inner = self.lock();
        match outcome {
            PromptOutcome::Ok => inner.counts.ok += 1,
            PromptOutcome::RateLimited => inner.counts.rate_limited += 1,
            PromptOutcome::Failed => inner.counts.failed += 1,
        }
        let counts = inner.counts;
        if let Some(widget) = &inner.widget {
            let bar = &widget.bar;
            // With --step-duration a step sends more than its nominal prompt count.
            if bar.length().is_some_and(|len| bar.position() >= len) {
                bar.inc_length(1);
            }
            bar.inc(1);
            bar.set_message(counts.to_string());
        }
    }

    /// Step `index` ended as `record` says: "step 4: 18 workers: passed (36 ok, 0 rate
    /// limited, 0 failed) in 2.3s".
    pub fn step_finished(&self, index: usize, record: &RunRecord) {
        let mut inner = self.lock();
        inner.clear_widget();
        inner.line(&format!(
            "step {}: {}: {} ({} ok, {} rate limited, {} failed) in {}",
            index + 1,
            crate::report::workers(record.workers),
            record.status.replace('_', " "),
            record.success,
            record.rate_limited,
            record.failed,
            crate::report::format_duration_ms(record.duration_ms),
        ));
    }

    /// The probe waits `wait` before the step of `next_workers` workers; `reason` says
    /// why that long ("retry hint 12.0s", "no retry hint; default cooldown"). On a
    /// terminal a spinner counts the wait down until the next call.
    pub fn cooldown(&self, wait: Duration, reason: &str, next_workers: u32) {
        let mut inner = self.lock();
        inner.clear_widget();
        let line = format!(
            "cooling down {:.1}s ({reason}) before {}",
            wait.as_secs_f64(),
            crate::report::workers(next_workers)
        );
        match inner.live {
            Some(live) => {
                let bar = ProgressBar::with_draw_target(None, live.target())
                    .with_style(countdown_style(wait))
                    .with_message(format!(
                        "({reason}) before {}",
                        crate::report::workers(next_workers)
                    ));
                bar.enable_steady_tick(Duration::from_millis(100));
                inner.widget = Some(Widget {
                    bar,
                    leaves: Some(line),
                });
            }
            None => inner.line(&line),
        }
    }

    /// A line of its own (a warning, the reason the probe stopped), printed above any
    /// live widget.
    pub fn note(&self, line: &str) {
        let mut inner = self.lock();
        let Inner { out, widget, .. } = &mut *inner;
        match widget {
            Some(widget) => widget.bar.suspend(|| write_line(out, line)),
            None => write_line(out, line),
        }
    }

    /// Clears any live widget; call before printing the summary.
    pub fn finish(&self) {
        self.lock().clear_widget();
    }
}

impl Inner {
    fn line(&mut self, line: &str) {
        write_line(&mut self.out, line);
    }

    fn clear_widget(&mut self) {
        if let Some(widget) = self.widget.take() {
            widget.bar.finish_and_clear();
            if let Some(line) = widget.leaves {
                self.line(&line);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.clear_widget();
    }
}

/// Progress output is best effort: a closed stderr must not stop a probe.
fn write_line(out: &mut Box<dyn Write + Send>, line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} prompts  {msg}")
        .expect("the bar template is valid")
        .progress_chars("##-")
}

/// "⠋ cooling down 12s (retry hint 12.0s) before 21 workers", counting down.
fn countdown_style(wait: Duration) -> ProgressStyle {
    ProgressStyle::with_template("{spinner} cooling down {remaining} {msg}")
        .expect("the countdown template is valid")
        .with_key(
            "remaining",
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let left = wait.saturating_sub(state.elapsed());
                let _ = write!(
                    w,
                    "{}s",
                    left.as_secs() + u64::from(left.subsec_nanos() > 0)
                );
            },
        )
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A writer the test can read back while `Progress` owns a copy.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn record(
        workers: u32,
        success: u32,
        rate_limited: u32,
        failed: u32,
        duration_ms: u64,
    ) -> RunRecord {
        let mut r =
            crate::report::summary::tests::run(workers, success, rate_limited, 0.0, 0, duration_ms);
        r.prompts += failed;
        r.failed = failed;
        r.latency_ms = None;
        r
    }

    #[test]
    fn plain_lines_when_not_a_terminal() {
        let buffer = Buffer::default();
        let progress = Progress::plain(Box::new(buffer.clone()));
        progress.step_started(3, 18, 36);
        for _ in 0..36 {
            progress.prompt_done(PromptOutcome::Ok);
        }
        progress.step_finished(3, &record(18, 36, 0, 0, 2_345));
        progress.step_started(4, 27, 54);
        progress.prompt_done(PromptOutcome::RateLimited);
        progress.step_finished(4, &record(27, 50, 3, 1, 4_050));
        progress.cooldown(Duration::from_millis(12_000), "retry hint 12.0s", 21);
        progress.note("warning: step 5 (27 workers): 1 prompt(s) failed after 3 retries");
        progress.step_started(5, 21, 42);
        progress.step_finished(5, &record(21, 42, 0, 0, 850));
        progress.finish();
        assert_eq!(
            buffer.text(),
            "\
step 4: 18 workers, 36 prompts
step 4: 18 workers: passed (36 ok, 0 rate limited, 0 failed) in 2.3s
step 5: 27 workers, 54 prompts
step 5: 27 workers: rate limited (50 ok, 3 rate limited, 1 failed) in 4.1s
cooling down 12.0s (retry hint 12.0s) before 21 workers
warning: step 5 (27 workers): 1 prompt(s) failed after 3 retries
step 6: 21 workers, 42 prompts
step 6: 21 workers: passed (42 ok, 0 rate limited, 0 failed) in 850ms
"
        );
    }

    /// Live mode draws to a hidden target here; what stays in the scrollback (the lines
    /// that replace the bar and the spinner) goes to the writer.
    #[test]
    fn live_widgets_leave_plain_lines_behind() {
        let buffer = Buffer::default();
        let progress = Progress::build(Box::new(buffer.clone()), Some(Live::Hidden));
        progress.step_started(0, 3, 6);
        let inner = progress.lock();
        let bar = inner.widget.as_ref().map(|w| w.bar.clone()).unwrap();
        drop(inner);
        // Prompts reported from other threads, as the engine's workers would.
        std::thread::scope(|scope| {
            for outcome in [
                PromptOutcome::Ok,
                PromptOutcome::Ok,
                PromptOutcome::RateLimited,
                PromptOutcome::Failed,
            ] {
                let progress = progress.clone();
                scope.spawn(move || progress.prompt_done(outcome));
            }
        });
        assert_eq!((bar.position(), bar.length()), (4, Some(6)));
        assert_eq!(bar.message(), "ok 2  429 1  failed 1");
        for _ in 0..4 {
            progress.prompt_done(PromptOutcome::Ok);
        }
        assert_eq!(
            (bar.position(), bar.length()),
            (8, Some(8)),
            "the bar grows past its nominal length"
        );
        assert_eq!(buffer.text(), "", "nothing but the bar while the step runs");

        progress.step_finished(0, &record(3, 6, 1, 1, 1_000));
        assert!(bar.is_finished());
        progress.cooldown(Duration::from_secs(5), "no retry hint; default cooldown", 2);
        assert_eq!(
            buffer.text(),
            "step 1: 3 workers: rate limited (6 ok, 1 rate limited, 1 failed) in 1.0s\n"
        );
        progress.finish();
        assert_eq!(
            buffer.text(),
            "step 1: 3 workers: rate limited (6 ok, 1 rate limited, 1 failed) in 1.0s\n\
             cooling down 5.0s (no retry hint; default cooldown) before 2 workers\n"
        );
    }

    #[test]
    fn progress_is_a_shareable_handle() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Progress>();
    }
}
