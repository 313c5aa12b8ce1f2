//! The state one running gateway shares between connections: configuration,
//! the auth service, the store, metrics and the derived cookie settings.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::net::Origin;
use crate::store::Store;

/// Shared state; held in an `Arc` by every connection.
pub struct App {
    /// Configuration in force.
    pub config: Config,
    /// Login and sessions.
    pub auth: Auth,
    /// The database.
    pub store: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// `--public-origin`, parsed.
    pub public_origin: Option<Origin>,
    /// Cookie name in use (`__Host-` prefixed under https).
    pub cookie_name: String,
    /// Whether cookies are `Secure`.
    pub cookie_secure: bool,
    /// Live sockets and rooms.
    pub gateway: Arc<Gateway>,
    /// Every task that must finish before the process exits (connections,
    /// sockets, background duties).
    pub tasks: TaskTracker,
    /// Cancelled when the server starts draining.
    pub shutdown: CancellationToken,
}

impl App {
    /// Opens the store, loads keys and starts the hashing threads. Blocking:
    /// call it off the reactor.
    ///
    /// # Errors
    /// Bad configuration, an unusable database or key file.
    pub fn open(config: Config) -> Result<Self> {
        let public_origin =
            match &config.public_origin {
                Some(s) => Some(Origin::parse(s).ok_or_else(|| {
                    Error::Config(format!("--public-origin {s:?} is not an origin"))
                })?),
                None => None,
            };
        let cookie_secure = public_origin.as_ref().is_some_and(Origin::is_https);
        let cookie_name = if cookie_secure {
            format!("__Host-{}", config.auth.cookie_name)
        } else {
            config.auth.cookie_name.clone()
        };
        if config.auth.cookie_name.is_empty()
            || !config
                .auth
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err(Error::Config(
                "cookie name: letters, digits, '_' and '-' only".into(),
            ));
        }
        let store = Store::open(&config.store)?;
        let metrics = Arc::new(Metrics::default());
        let tasks = TaskTracker::new();
        let auth = Auth::new(
            config.auth.clone(),
            store.clone(),
            metrics.clone(),
            tasks.clone(),
        )?;
        let gateway = Arc::new(Gateway::new(
            config.gateway.clone(),
            store.clone(),
            auth.clone(),
        ));
        Ok(Self {
            gateway,
            tasks,
            shutdown: CancellationToken::new(),
            config,
            auth,
            store,
            metrics,
            public_origin,
            cookie_name,
            cookie_secure,
        })
    }
}
