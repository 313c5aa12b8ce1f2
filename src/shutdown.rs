//! Process signals: the future that resolves on SIGINT or SIGTERM.

use std::future::Future;

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now, and returns a
/// future that resolves when either arrives.
///
/// The handlers exist from this call on, not from the first poll: call it
/// before announcing readiness, or a signal sent right after the
/// announcement kills the process without a drain. Needs a tokio runtime
/// with I/O enabled.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        async move {
            match handlers {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    }
                }
                _ => {
                    tracing::warn!("cannot install signal handlers; only Ctrl-C stops the server");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
