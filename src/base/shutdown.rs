//! The process's one shutdown signal (SIGINT or SIGTERM), made in `main` beside the one async
//! runtime and handed to the subcommands that stop cleanly (a replay flushes its results, a
//! cell stops its engine, the simulator drains).
//!
//! The handlers are installed the first time a subcommand asks, not in `main`: once tokio
//! watches a signal the default action (ending the process) is gone, and commands that never
//! ask, such as `collect`, must still end at once on Ctrl-C.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::runtime::Handle;
use tokio::sync::watch;

/// A future that resolves, with the reason, when a run must stop early and flush.
pub type StopSignal = Pin<Box<dyn Future<Output = String> + Send>>;

/// Carries why the process is asked to stop once SIGINT or SIGTERM arrives; clones share it.
#[derive(Clone)]
pub struct Shutdown {
    runtime: Handle,
    /// The reason's receiver, once the handlers are installed.
    watch: Arc<Mutex<Option<watch::Receiver<Option<String>>>>>,
}

impl Shutdown {
    /// A shutdown signal whose handlers will run on `runtime`.
    pub fn new(runtime: Handle) -> Self {
        Self {
            runtime,
            watch: Arc::new(Mutex::new(None)),
        }
    }

    /// A receiver that carries the reason (`interrupted (SIGINT)`, `terminated (SIGTERM)`)
    /// once a signal arrives; installs the handlers on the first call.
    pub fn watch(&self) -> Result<watch::Receiver<Option<String>>> {
        let mut slot = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = &*slot {
            return Ok(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        let _guard = self.runtime.enter();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot watch SIGINT")?;
        self.runtime.spawn(async move {
            let why = tokio::select! {
                _ = int.recv() => "interrupted (SIGINT)",
                _ = term.recv() => "terminated (SIGTERM)",
            };
            tx.send_replace(Some(why.to_owned()));
            // Later signals find the handlers still installed and change nothing: the first
            // reason stands while the command winds down.
            std::future::pending::<()>().await;
        });
        *slot = Some(rx.clone());
        Ok(rx)
    }

    /// A future that resolves with the reason once a signal arrives; installs the handlers now,
    /// so a signal sent as soon as the caller says it is ready is not lost.
    pub fn stop(&self) -> Result<StopSignal> {
        Ok(stop_when(self.watch()?))
    }

    /// Ctrl-C only, for a command that reacts to it (the Slurm watcher cancels its jobs) while
    /// SIGTERM keeps its default action.
    pub async fn interrupted() {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A stop signal that fires when `rx` carries a reason (never, if its sender is gone without one).
pub(crate) fn stop_when(mut rx: watch::Receiver<Option<String>>) -> StopSignal {
    Box::pin(async move {
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn stop_when_fires_with_the_reason_once_it_is_sent() {
        let rt = runtime();
        let (tx, rx) = watch::channel(None);
        rt.block_on(async {
            let mut stop = stop_when(rx);
            let early = tokio::time::timeout(Duration::from_millis(20), &mut stop).await;
            assert!(early.is_err(), "nothing sent yet");
            tx.send_replace(Some("terminated (SIGTERM)".to_owned()));
            assert_eq!(stop.await, "terminated (SIGTERM)");
        });
    }

    #[test]
    fn stop_when_sees_a_reason_sent_before_it_was_made() {
        let rt = runtime();
        let (tx, rx) = watch::channel(None);
        tx.send_replace(Some("interrupted (SIGINT)".to_owned()));
        assert_eq!(rt.block_on(stop_when(rx)), "interrupted (SIGINT)");
    }

    #[test]
    fn a_dropped_sender_without_a_reason_never_fires() {
        let rt = runtime();
        let (tx, rx) = watch::channel::<Option<String>>(None);
        drop(tx);
        let r = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), stop_when(rx)).await
        });
        assert!(r.is_err());
    }

    #[test]
    fn a_sigterm_reaches_every_clone_through_one_set_of_handlers() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let shutdown = Shutdown::new(rt.handle().clone());
        let rx = shutdown.watch().expect("handlers install");
        let stop = shutdown.clone().stop().expect("the same handlers");
        // SAFETY: kill(2) on this process with a signal tokio now handles.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
        let why = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), stop).await });
        assert_eq!(why.expect("the signal arrives"), "terminated (SIGTERM)");
        assert_eq!(rx.borrow().as_deref(), Some("terminated (SIGTERM)"));
    }
}
