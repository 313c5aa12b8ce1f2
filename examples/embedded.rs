//! The smallest embedding of wsgate: build a [`wsgate::Config`], bind, add a
//! user through the store API, serve until Ctrl-C (or SIGTERM).
//!
//! The database and key file live in a temporary directory removed on exit.
//!
//! ```text
//! cargo run --example embedded
//! # then open the printed address in a browser, or:
//! cargo run --example chat -- --url http://127.0.0.1:PORT --user demo --password PASSWORD
//! ```

use std::process::ExitCode;

use wsgate::config::HashParams;
use wsgate::{Config, Server, store};

async fn run() -> wsgate::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| wsgate::Error::io("creating a temp dir", e))?;
    let mut config = Config::new(dir.path());
    config.listen = ([127, 0, 0, 1], 0).into();
    let server = Server::bind(config).await?;
    // Handlers in place before the address is announced.
    let stop = wsgate::shutdown::signal();

    // A user with a random password, hashed on the gateway's hashing threads.
    let mut raw = [0u8; 12];
    rand::fill(&mut raw);
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let app = server.app();
    let phc = app
        .auth
        .hasher()
        .hash(HashParams::OWASP, password.clone())
        .await?;
    app.store
        .call(move |c| store::users::create(c, "demo", &phc))
        .await?;

    println!("wsgate listening on http://{}", server.local_addr()?);
    println!("log in as demo / {password}");
    server.serve(stop).await
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embedded: {e}");
            ExitCode::FAILURE
        }
    }
}
