//! The `herenow` binary: configuration, logs, signals; everything else is the library.
//! `herenow` serves; `herenow healthcheck` checks a running server (see `config::Cli`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herenow::config::{Cli, Command, Config, HealthcheckArgs, TokenArgs};
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel may queue: a burst of reconnects (an instance
/// restarting, a deploy) must not be refused. Capped by net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

fn main() -> ExitCode {
    let (cli, env_files) = match parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("herenow: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let result = match cli.command {
        None => runtime.block_on(serve(cli.config, env_files)),
        Some(Command::Healthcheck(args)) => runtime.block_on(healthcheck(&cli.config, args)),
        Some(Command::Token(args)) => mint(&cli.config, &args).map(|token| println!("{token}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herenow: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, after reading the env files it allows (before any thread starts:
/// they set environment variables). Parsed again when a file set something, so flags
/// still win over files and files fill in what neither flags nor the environment set.
fn parse() -> anyhow::Result<(Cli, Vec<std::path::PathBuf>)> {
    let cli = Cli::parse();
    if !cli.config.dotenv {
        return Ok((cli, Vec::new()));
    }
    let dir = std::env::current_dir().context("reading the working directory")?;
    let read = herenow::config::load_env_files(&dir).context("reading an env file")?;
    if read.is_empty() {
        return Ok((cli, read));
    }
    Ok((Cli::parse(), read))
}

async fn serve(config: Config, env_files: Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    config.check().map_err(anyhow::Error::msg)?;
    config.log_format.init();
    for file in &env_files {
        tracing::info!(file = %file.display(), "read settings from env file");
    }
    herenow::capacity::raise_open_files_limit();
    // Before listening: settings that can never work (a Redis password refused, a
    // certificate rejected) stop the start, in one line.
    let server = herenow::http::Server::from_config(&config)
        .await
        .unwrap_or_else(|err| {
            eprintln!("error: {err}");
            std::process::exit(1)
        });
    let listener = bind(SocketAddr::new(config.host, config.port))
        .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
    // The one stdout line: scripts and tests read the port from it.
    println!("herenow listening on http://{}", listener.local_addr()?);
    server.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn healthcheck(config: &Config, args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = args
        .url
        .unwrap_or_else(|| herenow::healthcheck::default_url(config.host, config.port));
    let status = herenow::healthcheck::check(&url, Duration::from_millis(args.timeout_ms)).await?;
    println!("{url}: {status}");
    Ok(())
}

/// `herenow token`: an HS256 token with AUTH_SECRET, for AUTH_ISSUER and AUTH_AUDIENCE.
fn mint(config: &Config, args: &TokenArgs) -> anyhow::Result<String> {
    use herenow::auth::{mint_hs256, now_secs, Claims, Identity};
    let secret = config.auth_secret.as_deref().context(
        "herenow token needs AUTH_SECRET (at least 32 bytes; try: openssl rand -hex 32)",
    )?;
    let claims = Claims {
        sub: args.sub.clone(),
        exp: now_secs() + args.ttl.as_secs(),
        name: args.name.clone(),
        avatar: args.avatar.clone(),
        color: args.color.clone(),
        rooms: args.rooms.clone(),
        role: Some(args.role.into()),
    };
    // The checks a server applies, so a token printed here is one it accepts.
    Identity::from_claims(claims.clone()).map_err(anyhow::Error::msg)?;
    Ok(mint_hs256(
        secret,
        &claims,
        config.auth_issuer.as_deref(),
        config.auth_audience.as_deref(),
    )?)
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
