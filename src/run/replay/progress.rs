//! What a running replay shows: a live line on a terminal, a log line every ten seconds
//! otherwise (a batch job's log would fill with spinner frames).

use std::io::IsTerminal;

/// Seconds between log lines when stderr is not a terminal.
const LOG_EVERY_S: f64 = 10.0;

/// A live progress line on a terminal; a log line every ten seconds otherwise.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_log: std::sync::Mutex<f64>,
}

impl Progress {
    pub(super) fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .expect("valid template"),
            );
            bar
        });
        Self {
            bar,
            last_log: std::sync::Mutex::new(0.0),
        }
    }

    pub(super) fn show(&self, now_s: f64, users: usize, p: crate::data::tally::Progress) {
        let msg = message(now_s, users, &p);
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg);
                bar.tick();
            }
            None => {
                if self.log_due(now_s) {
                    eprintln!("replay: {now_s:.0}s {msg}");
                }
            }
        }
    }

    /// Whether a log line is due at `now_s` (and if so, counts it as written).
    fn log_due(&self, now_s: f64) -> bool {
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if now_s - *last < LOG_EVERY_S {
            return false;
        }
        *last = now_s;
        true
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
/// The progress line: users, requests and their rate so far, TTFT, hit rate and errors.
fn message(now_s: f64, users: usize, p: &crate::data::tally::Progress) -> String {
    format!(
        "users {users}  requests {}  {:.1} req/s  TTFT p50 {:.0} ms  hit rate {:.1}%  errors {}",
        p.requests,
        p.requests as f64 / now_s.max(1e-9),
        p.ttft_p50_ms,
        p.hit_rate * 100.0,
        p.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gives_the_rate_hit_rate_and_errors() {
        let p = crate::data::tally::Progress {
            requests: 50,
            errors: 2,
            ttft_p50_ms: 123.4,
            hit_rate: 0.875,
        };
        assert_eq!(
            message(10.0, 4, &p),
            "users 4  requests 50  5.0 req/s  TTFT p50 123 ms  hit rate 87.5%  errors 2"
        );
        assert!(message(0.0, 0, &crate::data::tally::Progress::default()).contains("0.0 req/s"));
    }

    #[test]
    fn without_a_terminal_a_line_is_logged_every_ten_seconds() {
        let p = Progress {
            bar: None,
            last_log: std::sync::Mutex::new(0.0),
        };
        assert!(!p.log_due(1.0));
        assert!(!p.log_due(9.9));
        assert!(p.log_due(10.0));
        assert!(
            !p.log_due(19.0),
            "ten seconds after the last line, not the start"
        );
        assert!(p.log_due(20.5));
    }
}
