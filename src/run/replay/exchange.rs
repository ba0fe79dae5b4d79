//! One request's exchange: admission, the send (again after a 429), and the record it leaves.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::control;
use super::state::Run;
use crate::data::tally::RequestRecord;
use crate::run::openai::client::{self, PromptBody};

/// Waits for admission, sends one request (again after a 429, honouring Retry-After), and
/// hands its record to the collector. The time spent waiting counts in the schedule delay and
/// so in the effective TTFT. Returns whether the request was sent: one still waiting for
/// admission when `--duration` ends is not (counted in `Run::unsent_at_deadline`), and a 429
/// whose resend would go after the deadline keeps that answer as its record.
pub(super) async fn exchange(
    run: &Run,
    record: RecordBase,
    body: PromptBody,
    admit: control::AdmitRequest,
) -> bool {
    let timeout = Duration::from_secs_f64(run.args.request_timeout.max(1.0));
    let endpoint = &run.endpoints[record.endpoint];
    run.in_flight.fetch_add(1, Ordering::SeqCst);
    if let Some(idle) = &run.system_idle {
        idle.sent();
    }
    let mut attempts = 0u32;
    let mut answered: Option<(client::Measured, f64)> = None;
    while let Some((mut permit, sent_s)) = admit_in_time(run, &admit).await {
        attempts += 1;
        let m = client::send(
            &run.client,
            &endpoint.url,
            &record.session,
            body.clone(),
            timeout,
            || permit.first_token(),
        )
        .await;
        drop(permit);
        let wait = retry_wait(&m, attempts, &run.args.control);
        answered = Some((m, sent_s));
        match wait {
            Some(wait) => tokio::time::sleep(wait).await,
            None => break,
        }
    }
    let sent = answered.is_some();
    match answered {
        Some((m, sent_s)) => {
            let _ = run.records.send(record.finish(m, sent_s, attempts));
        }
        None => {
            run.unsent_at_deadline.fetch_add(1, Ordering::Relaxed);
        }
    }
    run.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(idle) = &run.system_idle {
        idle.finished();
    }
    sent
}

/// Waits for admission, but not past the run's deadline: the permit and the send time (seconds
/// from the start, before the deadline), or `None` when the deadline came first. The deadline
/// is checked when admission lets the request go, so a request held by an admission control
/// (`--max-concurrent-requests`, token budgets, the working-set cap) is never sent after
/// `--duration`.
async fn admit_in_time<'a>(
    run: &'a Run,
    req: &control::AdmitRequest,
) -> Option<(control::Permit<'a>, f64)> {
    let permit = match run.deadline {
        None => run.admission.admit(req).await,
        Some(deadline) => tokio::select! {
            permit = run.admission.admit(req) => permit,
            () = tokio::time::sleep_until(deadline.into()) => return None,
        },
    };
    let now = Instant::now();
    if run.deadline.is_some_and(|d| now >= d) {
        return None;
    }
    Some((permit, run.since_start(now)))
}

/// The part of a record known before the request is sent.
pub(super) struct RecordBase {
    pub(super) id: u64,
    pub(super) user: u32,
    pub(super) session: String,
    pub(super) index: u32,
    pub(super) endpoint: usize,
    pub(super) scheduled_s: f64,
    pub(super) trace_input: u32,
    pub(super) trace_output: u32,
    pub(super) fresh: bool,
}

impl RecordBase {
    fn finish(self, m: client::Measured, sent_s: f64, attempts: u32) -> RequestRecord {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        RequestRecord {
            id: self.id,
            user: self.user,
            session: self.session,
            index: self.index,
            endpoint: self.endpoint,
            scheduled_s: self.scheduled_s,
            sent_s,
            attempts,
            fresh: self.fresh,
            // From the measured exchange, so it falls before the admission slot is freed.
            done_s: sent_s + m.e2e.as_secs_f64(),
            ttft_ms: m.ttft.map(ms),
            e2e_ms: ms(m.e2e),
            gaps_ms: m.gaps.iter().map(|g| ms(*g)).collect(),
            trace_input_tokens: self.trace_input,
            trace_output_tokens: self.trace_output,
            prompt_tokens: m.usage.map(|u| u.prompt_tokens),
            completion_tokens: m.usage.map(|u| u.completion_tokens),
            cached_tokens: m.usage.map(|u| u.cached_tokens),
            outcome: m.outcome(),
            http_status: m.http_status,
            error: m.error.clone().unwrap_or_default(),
        }
    }
}
/// How long to wait before sending again after the `attempts`-th send came back as `m`: only a
/// 429 is retried, `--rate-limit-retries` times, after its Retry-After or
/// `--rate-limit-backoff`.
fn retry_wait(
    m: &client::Measured,
    attempts: u32,
    c: &crate::base::workload::control::ControlArgs,
) -> Option<Duration> {
    (m.http_status == 429 && attempts <= c.rate_limit_retries).then(|| {
        m.retry_after
            .unwrap_or_else(|| Duration::from_secs_f64(c.rate_limit_backoff.max(0.0)))
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::run::openai::client::{Outcome, Usage};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        control: crate::base::workload::control::ControlArgs,
    }

    fn control(extra: &[&str]) -> crate::base::workload::control::ControlArgs {
        Cli::try_parse_from(std::iter::once(&"x").chain(extra))
            .expect("test arguments parse")
            .control
    }

    fn answered(status: u16, retry_after: Option<Duration>) -> client::Measured {
        client::Measured {
            http_status: status,
            retry_after,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_429_is_sent_again_and_only_so_often() {
        let c = control(&["--rate-limit-retries", "2", "--rate-limit-backoff", "3"]);
        let limited = answered(429, None);
        assert_eq!(retry_wait(&limited, 1, &c), Some(Duration::from_secs(3)));
        assert_eq!(retry_wait(&limited, 2, &c), Some(Duration::from_secs(3)));
        assert_eq!(retry_wait(&limited, 3, &c), None, "out of retries");
        assert_eq!(retry_wait(&answered(503, None), 1, &c), None);
        assert_eq!(retry_wait(&answered(200, None), 1, &c), None);
    }

    #[test]
    fn retry_after_wins_over_the_backoff() {
        let c = control(&["--rate-limit-backoff", "30"]);
        let m = answered(429, Some(Duration::from_millis(250)));
        assert_eq!(retry_wait(&m, 1, &c), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_record_is_timed_from_its_last_send() {
        let base = RecordBase {
            id: 7,
            user: 2,
            session: "s".into(),
            index: 3,
            endpoint: 1,
            scheduled_s: 1.0,
            trace_input: 100,
            trace_output: 10,
            fresh: true,
        };
        let m = client::Measured {
            ttft: Some(Duration::from_millis(40)),
            gaps: vec![Duration::from_millis(5); 9],
            e2e: Duration::from_millis(100),
            usage: Some(Usage {
                prompt_tokens: 100,
                completion_tokens: 10,
                cached_tokens: 64,
            }),
            http_status: 200,
            ..Default::default()
        };
        let r = base.finish(m, 2.5, 2);
        assert_eq!(
            (r.id, r.user, r.index, r.endpoint, r.attempts),
            (7, 2, 3, 1, 2)
        );
        assert_eq!((r.scheduled_s, r.sent_s), (1.0, 2.5));
        assert!((r.done_s - 2.6).abs() < 1e-9);
        assert_eq!(r.ttft_ms, Some(40.0));
        assert_eq!(r.e2e_ms, 100.0);
        assert_eq!(r.gaps_ms.len(), 9);
        assert_eq!(r.cached_tokens, Some(64));
        assert_eq!(r.outcome, Outcome::Ok);
        assert!(r.fresh && r.error.is_empty());
    }
}
