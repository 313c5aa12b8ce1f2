//! The `wsgate` command line: `serve` (the default) and `user …`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use wsgate::config::{HashParams, KeySource, SessionProtection};
use wsgate::net::{Cidr, OriginSet};
use wsgate::store::{self, Store};
use wsgate::{Config, Error, Server};

/// wsgate: log people in and hold their live WebSockets.
///
/// With no command, `wsgate` runs `wsgate serve`. Every flag can also be set
/// through the environment variable shown beside it.
#[derive(Parser, Debug)]
#[command(name = "wsgate", version)]
struct Cli {
    /// Directory for the database and the secret key file.
    #[arg(
        long,
        global = true,
        env = "WSGATE_DATA_DIR",
        default_value = "wsgate-data"
    )]
    data_dir: PathBuf,
    /// SQLite database file [default: DATA_DIR/wsgate.db].
    #[arg(long, global = true, env = "WSGATE_DB")]
    db: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "WSGATE_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default).
    Serve(Box<ServeArgs>),
    /// Manage users (works while a server runs on the same database).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, env = "WSGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Secret key file, created with mode 0600 on first start [default: DATA_DIR/secret.key].
    #[arg(long, env = "WSGATE_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// A previous key file whose cookies still verify (repeatable; in the environment, comma-separated).
    #[arg(
        long = "previous-key-file",
        env = "WSGATE_PREVIOUS_KEY_FILES",
        value_delimiter = ','
    )]
    previous_key_files: Vec<PathBuf>,
    /// The origin the gateway is reached at (required behind a proxy or TLS terminator); https makes cookies Secure and __Host- prefixed.
    #[arg(long, env = "WSGATE_PUBLIC_ORIGIN")]
    public_origin: Option<String>,
    /// Comma-separated origins allowed for /auth, /logout and /ws (replaces the public origin; * allows any).
    #[arg(long, env = "WSGATE_ALLOWED_ORIGINS")]
    allowed_origins: Option<OriginSet>,
    /// Comma-separated CIDRs of proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "WSGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<Cidr>,
    /// Session protection: strong (bound to the User-Agent), basic or off.
    #[arg(long, env = "WSGATE_SESSION_PROTECTION", default_value = "strong")]
    session_protection: SessionProtection,
    /// Session cookie name.
    #[arg(long, env = "WSGATE_COOKIE_NAME", default_value = "wsgate_session")]
    cookie_name: String,
    /// Password hashing threads [default: one per core].
    #[arg(long, env = "WSGATE_HASH_THREADS")]
    hash_threads: Option<usize>,
    /// Login queue budget: longest expected wait admitted, in seconds.
    #[arg(long, env = "WSGATE_LOGIN_QUEUE_BUDGET", default_value_t = 5.0)]
    login_queue_budget: f64,
    /// SQLite busy timeout in milliseconds.
    #[arg(long, env = "WSGATE_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    busy_timeout_ms: u64,
    /// Pooled database connections.
    #[arg(long, env = "WSGATE_POOL_SIZE", default_value_t = 8)]
    pool_size: u32,
    /// Open TCP connections at most.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value_t = 110_000)]
    max_connections: usize,
    /// API key of POST /publish (the API is disabled without a key).
    #[arg(
        long,
        env = "WSGATE_PUBLISH_KEY",
        hide_env_values = true,
        conflicts_with = "publish_key_file"
    )]
    publish_key: Option<String>,
    /// File holding the API key of POST /publish (first line).
    #[arg(long, env = "WSGATE_PUBLISH_KEY_FILE")]
    publish_key_file: Option<PathBuf>,
    /// Seconds between the server's WebSocket pings.
    #[arg(long, env = "WSGATE_PING_INTERVAL", default_value_t = 30.0)]
    ping_interval: f64,
    /// Seconds without a pong after which a socket is closed with 4003.
    #[arg(long, env = "WSGATE_PONG_TIMEOUT", default_value_t = 60.0)]
    pong_timeout: f64,
    /// Sockets one user may hold.
    #[arg(long, env = "WSGATE_MAX_SOCKETS_PER_USER", default_value_t = 32)]
    max_sockets_per_user: usize,
    /// Sockets in total.
    #[arg(long, env = "WSGATE_MAX_SOCKETS", default_value_t = 100_000)]
    max_sockets: usize,
    /// Requests per second allowed on one socket (every inbound frame counts).
    #[arg(long, env = "WSGATE_SOCKET_RATE", default_value_t = 100.0)]
    socket_rate: f64,
    /// Request burst allowed on one socket.
    #[arg(long, env = "WSGATE_SOCKET_BURST", default_value_t = 200.0)]
    socket_burst: f64,
    /// Frames queued per socket before it is closed as a slow consumer (4002).
    #[arg(long, env = "WSGATE_OUTBOUND_QUEUE", default_value_t = 1024)]
    outbound_queue: usize,
    /// Seconds to let in-flight work finish on SIGINT/SIGTERM.
    #[arg(long, env = "WSGATE_DRAIN_TIMEOUT", default_value_t = 10.0)]
    drain_timeout: f64,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password is read from stdin (one line) or prompted.
    Add {
        /// Username: letters, digits, '_', '.', '-'; at most 32.
        name: String,
    },
    /// Set a user's password (revokes all of the user's sessions).
    Passwd {
        /// Username.
        name: String,
    },
    /// Disable a user (revokes all of the user's sessions).
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Username.
        name: String,
    },
    /// Remove a user and all of the user's sessions.
    Remove {
        /// Username.
        name: String,
    },
    /// List users.
    List,
    /// FOR LOAD TESTS ONLY: create or reset PREFIX0..PREFIX{COUNT-1}, all
    /// with one password (read from stdin, hashed once).
    Seed {
        /// Name prefix.
        prefix: String,
        /// How many users.
        count: u64,
    },
}

fn main() -> ExitCode {
    let cli = parse_cli();
    init_tracing(&cli.log);
    let result = match &cli.command {
        None => serve(&cli, cli.serve.clone()),
        Some(Command::Serve(args)) => serve(&cli, (**args).clone()),
        Some(Command::User(cmd)) => user(&cli, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line. The top-level serve flags (`wsgate --listen …`)
/// cannot precede a subcommand, but the global ones (`--db`, `--data-dir`,
/// `--log`) can: clap's `args_conflicts_with_subcommands` would refuse
/// those too, so the rule is checked here.
fn parse_cli() -> Cli {
    let mut cmd = Cli::command();
    let matches = cmd.get_matches_mut();
    if let Some((sub, _)) = matches.subcommand() {
        let serve_flag = cmd.get_arguments().find(|a| {
            !a.is_global_set()
                && matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
        });
        if let Some(flag) = serve_flag {
            let flag = flag.get_long().unwrap_or_else(|| flag.get_id().as_str());
            cmd.error(
                ErrorKind::ArgumentConflict,
                format!("the subcommand '{sub}' cannot be used with '--{flag}'; put serve flags after 'serve'"),
            )
            .exit();
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn db_path(cli: &Cli) -> PathBuf {
    cli.db
        .clone()
        .unwrap_or_else(|| cli.data_dir.join("wsgate.db"))
}

fn config(cli: &Cli, args: ServeArgs) -> Result<Config, Error> {
    let mut c = Config::new(&cli.data_dir);
    c.listen = args.listen;
    c.store.db_path = db_path(cli);
    if let Some(k) = args.key_file {
        c.auth.key = KeySource::File(k);
    }
    c.auth.previous_keys = args
        .previous_key_files
        .into_iter()
        .map(KeySource::File)
        .collect();
    c.public_origin = args.public_origin;
    c.allowed_origins = args.allowed_origins;
    c.trusted_proxies = args.trusted_proxies;
    c.auth.protection = args.session_protection;
    c.auth.cookie_name = args.cookie_name;
    if let Some(n) = args.hash_threads {
        c.auth.hash_threads = n.max(1);
    }
    c.auth.login_queue_budget = secs(args.login_queue_budget, "--login-queue-budget")?;
    c.store.busy_timeout = Duration::from_millis(args.busy_timeout_ms);
    c.store.pool_size = args.pool_size.max(1);
    c.max_connections = args.max_connections.max(1);
    c.drain_timeout = secs(args.drain_timeout, "--drain-timeout")?;
    c.gateway.publish_key = match (args.publish_key, args.publish_key_file) {
        (Some(k), _) => Some(k),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            Some(text.lines().next().unwrap_or("").trim().to_owned())
        }
        (None, None) => None,
    };
    if c.gateway.publish_key.as_deref().is_some_and(str::is_empty) {
        return Err(Error::Config("the publish API key cannot be empty".into()));
    }
    c.gateway.ping_interval = secs(args.ping_interval, "--ping-interval")?;
    c.gateway.pong_timeout = secs(args.pong_timeout, "--pong-timeout")?;
    c.gateway.max_sockets_per_user = args.max_sockets_per_user.max(1);
    c.gateway.max_sockets = args.max_sockets.max(1);
    c.gateway.outbound_queue = args.outbound_queue.max(1);
    c.gateway.rate_per_sec = args.socket_rate.max(0.0);
    c.gateway.rate_burst = args.socket_burst.max(1.0);
    Ok(c)
}

fn secs(v: f64, flag: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| Error::Config(format!("{flag} must be a non-negative number of seconds")))
}

fn serve(cli: &Cli, args: ServeArgs) -> Result<(), Error> {
    let config = config(cli, args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    rt.block_on(async move {
        let server = Server::bind(config).await?;
        // Handlers in place before the readiness line (see shutdown::signal).
        let stop = wsgate::shutdown::signal();
        if let Some((name, password)) = server.create_first_user().await? {
            println!("created the first user {name:?} with password {password:?}");
            println!("(shown once; change it with: wsgate user passwd {name})");
        }
        println!("wsgate listening on http://{}", server.local_addr()?);
        let _ = std::io::stdout().flush();
        server.serve(stop).await
    })
}

fn open_store(cli: &Cli) -> Result<Store, Error> {
    let defaults = Config::new(&cli.data_dir);
    let mut sc = defaults.store;
    sc.db_path = db_path(cli);
    Store::open(&sc)
}

fn read_password(confirm: bool) -> Result<String, Error> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let pw = rpassword::prompt_password("Password: ")
            .map_err(|e| Error::io("reading the password", e))?;
        if confirm {
            let again = rpassword::prompt_password("Repeat password: ")
                .map_err(|e| Error::io("reading the password", e))?;
            if again != pw {
                return Err(Error::Config("the passwords do not match".into()));
            }
        }
        pw
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("reading the password from stdin", e))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if pw.is_empty() {
        return Err(Error::Config("the password cannot be empty".into()));
    }
    Ok(pw)
}

fn check_name(name: &str) -> Result<(), Error> {
    match wsgate::names::username_problem(name) {
        Some(p) => Err(Error::InvalidUsername(p)),
        None => Ok(()),
    }
}

fn hash(password: &str) -> Result<String, Error> {
    wsgate::auth::password::hash_password(HashParams::OWASP, password.as_bytes())
}

fn revoked_note(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 session revoked".into(),
        n => format!("; {n} sessions revoked"),
    }
}

fn user(cli: &Cli, cmd: &UserCommand) -> Result<(), Error> {
    match cmd {
        UserCommand::Add { name } => {
            check_name(name)?;
            let pw = read_password(true)?;
            let phc = hash(&pw)?;
            let store = open_store(cli)?;
            let id = store.blocking(|c| store::users::create(c, name, &phc))?;
            println!("created user {name} (id {id})");
        }
        UserCommand::Passwd { name } => {
            check_name(name)?;
            let store = open_store(cli)?;
            // Fail on an unknown user before asking for a password.
            ensure_exists(&store, name)?;
            let pw = read_password(true)?;
            let phc = hash(&pw)?;
            let (_, revoked) = store.blocking(|c| store::users::set_password(c, name, &phc))?;
            println!("password of {name} changed{}", revoked_note(revoked.len()));
        }
        UserCommand::Disable { name } => {
            check_name(name)?;
            let store = open_store(cli)?;
            let (_, revoked) = store.blocking(|c| store::users::set_disabled(c, name, true))?;
            println!("disabled {name}{}", revoked_note(revoked.len()));
        }
        UserCommand::Enable { name } => {
            check_name(name)?;
            let store = open_store(cli)?;
            store.blocking(|c| store::users::set_disabled(c, name, false))?;
            println!("enabled {name}");
        }
        UserCommand::Remove { name } => {
            check_name(name)?;
            let store = open_store(cli)?;
            let (_, revoked) = store.blocking(|c| store::users::remove(c, name))?;
            println!("removed {name}{}", revoked_note(revoked.len()));
        }
        UserCommand::List => {
            let store = open_store(cli)?;
            let users = store.blocking(|c| store::users::list(c))?;
            println!(
                "{:>6}  {:<32}  {:<8}  {:>8}",
                "ID", "USERNAME", "STATUS", "SESSIONS"
            );
            for u in users {
                let status = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:>6}  {:<32}  {:<8}  {:>8}",
                    u.id, u.username, status, u.sessions
                );
            }
        }
        UserCommand::Seed { prefix, count } => {
            let longest = format!("{prefix}{}", count.saturating_sub(1));
            check_name(&longest)?;
            check_name(&format!("{prefix}0"))?;
            let pw = read_password(false)?;
            let phc = hash(&pw)?;
            let store = open_store(cli)?;
            let (created, updated) =
                store.blocking(|c| store::users::seed(c, prefix, *count, &phc))?;
            println!(
                "seeded {prefix}0..{prefix}{}: {created} created, {updated} reset (for load tests only)",
                count.saturating_sub(1)
            );
        }
    }
    Ok(())
}

fn ensure_exists(store: &Store, name: &str) -> Result<(), Error> {
    let found = store.blocking(|c| store::users::find_for_login(c, name))?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::UnknownUser(name.to_owned())),
    }
}
