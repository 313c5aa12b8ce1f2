//! The server: the caller binds, the library serves. Accept loop, one hyper
//! HTTP/1.1 connection task per TCP connection, the session sweeper, and the
//! drain order on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Name of the user created when the user table is empty at start.
pub const FIRST_USER: &str = "admin";

/// A bound, not yet serving, gateway.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
}

impl Server {
    /// Opens the store and keys, starts the hashing threads and binds the
    /// listen address (port 0 picks a free port; see [`Server::local_addr`]).
    ///
    /// # Errors
    /// Bad configuration, an unusable database or key file, a bind failure.
    pub async fn bind(config: Config) -> Result<Self> {
        let listen = config.listen;
        let app = tokio::task::spawn_blocking(move || App::open(config))
            .await
            .map_err(|e| Error::Internal(format!("startup task failed: {e}")))??;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io(format!("binding {listen}"), e))?;
        Ok(Self {
            listener,
            app: Arc::new(app),
        })
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// The socket has no local address (should not happen once bound).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))
    }

    /// Shared state (tests and embedding).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// When no user exists yet, creates [`FIRST_USER`] with a random password
    /// and returns (name, password) so it can be shown once.
    ///
    /// # Errors
    /// The store fails.
    pub async fn create_first_user(&self) -> Result<Option<(String, String)>> {
        let count = self.app.store.call(|c| store::users::count(c)).await?;
        if count > 0 {
            return Ok(None);
        }
        let mut raw = [0u8; 15];
        rand::fill(&mut raw);
        let password: String =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        let params = self.app.config.auth.hash_params;
        let phc = self
            .app
            .auth
            .hasher()
            .hash(params, password.clone())
            .await?;
        let created = self
            .app
            .store
            .call(move |c| match store::users::create(c, FIRST_USER, &phc) {
                Ok(_) => Ok(true),
                Err(store::StoreError::Domain(Error::DuplicateUser(_))) => Ok(false),
                Err(e) => Err(e),
            })
            .await?;
        Ok(created.then(|| (FIRST_USER.to_owned(), password)))
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting, lets
    /// in-flight requests finish within the drain timeout, stops the hashing
    /// threads and checkpoints the WAL.
    ///
    /// # Errors
    /// The final checkpoint fails.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let Self { listener, app } = self;
        let token = app.shutdown.clone();
        let tracker = app.tasks.clone();
        let slots = Arc::new(Semaphore::new(app.config.max_connections));
        tracker.spawn(sweeper(app.clone(), token.clone()));
        let gw = &app.gateway;
        tracker.spawn(gw.clone().heartbeat(token.clone()));
        tracker.spawn(gw.clone().sweep_rooms(token.clone()));
        tracker.spawn(gw.clone().watch_sessions(
            token.clone(),
            app.config.watch_interval,
            app.config.sweep_interval,
        ));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            tracing::warn!(%peer, "connection limit reached; connection closed");
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        tracker.spawn(connection(app.clone(), stream, peer, token.clone(), permit));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(sockets = app.gateway.registry.len(), "draining");
        token.cancel();
        // hyper's graceful shutdown does not see upgraded sockets: tell
        // each one to close with 1001 itself.
        app.gateway
            .registry
            .close_all(crate::gateway::close::CloseReason::GoingAway);
        tracker.close();
        if tokio::time::timeout(app.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout: some connections were cut");
        }
        app.auth.stop();
        let store = app.store.clone();
        tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .map_err(|e| Error::Internal(format!("checkpoint task failed: {e}")))??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// One TCP connection: HTTP/1.1 with upgrades, header read timeout, and a
/// graceful close when the server drains.
async fn connection(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    token: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    app.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    let svc_app = app.clone();
    let svc = service_fn(move |req| {
        let app = svc_app.clone();
        async move { Ok::<_, Infallible>(crate::http::handle(app, req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    app.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
}

/// Deletes ended sessions every sweep interval.
async fn sweeper(app: Arc<App>, token: CancellationToken) {
    let mut tick = tokio::time::interval(app.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = token.cancelled() => return,
        }
        match app.auth.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "session sweep deferred"),
        }
    }
}
