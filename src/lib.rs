//! wsgate: a realtime-first WebSocket gateway.
//!
//! People log in over HTTP (`POST /auth`, argon2id, a signed HttpOnly
//! session cookie) and then hold a live WebSocket that is opened only for a
//! valid session. The wire contract is PROTOCOL.md; this crate is the whole
//! server, usable in-process:
//!
//! ```no_run
//! # async fn run() -> wsgate::Result<()> {
//! let mut config = wsgate::Config::new("./wsgate-data");
//! config.listen = "127.0.0.1:0".parse().unwrap();
//! let server = wsgate::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr()?);
//! server.serve(wsgate::shutdown::signal()).await
//! # }
//! ```
//!
//! A tour of the layout, from the outside in:
//! - [`server`]: accept loop, hyper connections, drain order.
//! - [`gateway`]: `GET /ws`, the socket task, rooms (hub), live sockets (registry).
//! - [`http`]: routing, request facts, errors mapped to responses.
//! - [`auth`]: passwords (hashing threads), cookies, session policy, limits.
//! - [`store`]: the SQLite file behind an r2d2 pool; every call off the reactor.
//! - [`config`], [`error`], [`metrics`], [`net`], [`names`], [`shutdown`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod names;
pub mod net;
pub mod server;
pub mod shutdown;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};
pub use server::Server;
