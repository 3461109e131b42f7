//! Every setting, from flags or the environment, with its default and the reason for it.
//! `herenow --help` lists them all; the README's table is the same list. Also the
//! command line around them ([`Cli`]: `herenow` serves, `herenow <command>` runs a tool)
//! and the env files read at start ([`load_env_files`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::auth::{AuthMode, AuthSettings, Role, MIN_SECRET_BYTES};

/// Env files read at start from the working directory, first one first: `.env.local` is
/// what `vercel env pull` writes; a variable already set (by the shell, the platform or
/// an earlier file) is never overridden.
pub const ENV_FILES: [&str; 2] = [".env.local", ".env"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `MAX_SOCKETS_PER_IP` unless AUTH=off: a household or an office behind one address
/// opens a few dozen tabs at most.
pub const DEFAULT_SOCKETS_PER_IP: u32 = 100;
/// `HANDSHAKES_PER_IP_PER_SEC` unless AUTH=off: a burst of 40 covers a browser restoring
/// every tab at once; a reconnect loop or a scan does not get further.
pub const DEFAULT_HANDSHAKES_PER_IP_PER_SEC: u32 = 20;

impl LogFormat {
    /// Install the global log subscriber (filter from `RUST_LOG`, `info` by default), on
    /// stderr: stdout carries the one listening line, whatever is logged before it.
    pub fn init(self) {
        use tracing_subscriber::EnvFilter;
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        match self {
            LogFormat::Pretty => tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(filter)
                .init(),
            LogFormat::Json => tracing_subscriber::fmt()
                .json()
                .with_writer(std::io::stderr)
                .with_env_filter(filter)
                .init(),
        }
    }
}

/// The command line: `herenow` alone serves with [`Config`]'s settings (flags or
/// environment, the same ones for every command); `herenow <command>` runs a tool.
#[derive(Debug, Parser)]
#[command(name = "herenow", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

impl Cli {
    /// Parse `args` ignoring the environment, like [`Config::parse_from_env_free`].
    pub fn parse_from_env_free<I, T>(args: I) -> Cli
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from_env_free(args).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::parse_from_env_free`] returning clap's error instead of exiting.
    pub fn try_parse_from_env_free<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = without_env(Cli::command()).try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }
}

/// `cmd` with no argument read from the environment, its subcommands' included.
fn without_env(mut cmd: clap::Command) -> clap::Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| a.env(None::<&str>));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, without_env);
    }
    cmd
}

/// The tools besides serving.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Exit 0 if the server at HOST:PORT (the server's own settings: environment, or
    /// flags before `healthcheck`) answers /server/healthz, else print why and exit 1: a
    /// container's HEALTHCHECK (slim images have no curl).
    Healthcheck(HealthcheckArgs),
    /// Print an HS256 token signed with AUTH_SECRET (development and tests).
    Token(TokenArgs),
}

/// `herenow healthcheck`.
#[derive(Clone, Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to check (http only). Default: http://HOST:PORT/server/healthz, with an
    /// unspecified HOST (0.0.0.0, ::) read as this machine's loopback.
    #[arg(long)]
    pub url: Option<String>,

    /// How long the whole check may take before it counts as failed.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
}

/// herenow: room presence over WebSockets (who is on this page right now).
#[derive(Clone, Debug, Parser)]
#[command(name = "herenow", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one; the chosen address is printed on stdout).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Directory of the built demo app to serve (index.html for any other GET outside
    /// /server). Unset: a page that says how to build it.
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// This process's name in a shared store (default: random). Must be unique per
    /// running instance.
    #[arg(long, env = "INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS (a managed
    /// Redis such as Upstash). Unset: the in-memory store, one process.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// PEM file of the CA that signed the Redis server's certificate, for a private CA
    /// (rediss:// only). Unset: the built-in public roots (Mozilla's), which managed
    /// Redis services are signed by, so no system certificate store is needed.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Talk to a Redis Cluster (REDIS_URL may list several seed nodes, comma-separated).
    #[arg(long, env = "REDIS_CLUSTER", default_value_t = false)]
    pub redis_cluster: bool,

    /// Prefix of every Redis key and channel, so several apps can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = "presence")]
    pub redis_prefix: String,

    /// A member with no inbound frame (protocol pongs count) for this long is dropped.
    /// Browsers answer protocol pings even in throttled background tabs.
    #[arg(long, env = "STALE_MS", default_value_t = 30_000)]
    pub stale_ms: u64,

    /// How often an instance refreshes the store (one round trip for all its rooms).
    /// At most STALE_MS / 3, so one late beat never prunes anyone.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 5_000)]
    pub heartbeat_ms: u64,

    /// Liveness lease of an instance in a shared store: a crashed instance's members are
    /// gone everywhere after the lease plus one reap sweep (under 10 s by default).
    #[arg(long, env = "LEASE_MS", default_value_t = 6_000)]
    pub lease_ms: u64,

    /// How often an instance renews its lease and reaps expired ones (shared store only).
    /// At most LEASE_MS / 3.
    #[arg(long, env = "REAP_MS", default_value_t = 2_000)]
    pub reap_ms: u64,

    /// Reconnect window: a socket that closes (other than with 1000) and comes back with
    /// the same id within it causes no leave and no join. Hides reloads and platform
    /// cuts of long connections.
    #[arg(long, env = "GRACE_MS", default_value_t = 3_000)]
    pub grace_ms: u64,

    /// Protocol-level ping to each socket, so dead peers are noticed and proxies keep
    /// the connection open. [default: STALE_MS / 2] At most STALE_MS / 2: a socket that
    /// only answers pings must answer one before it counts as stale.
    #[arg(long, env = "PING_MS")]
    pub ping_ms: Option<u64>,

    /// A typing signal not refreshed for this long is withdrawn by the server.
    #[arg(long, env = "TYPING_TIMEOUT_MS", default_value_t = 5_000)]
    pub typing_timeout_ms: u64,

    /// A socket that sends no valid hello within this time is closed with 1008.
    #[arg(long, env = "HELLO_TIMEOUT_MS", default_value_t = 10_000)]
    pub hello_timeout_ms: u64,

    /// Largest inbound frame; larger ones close the socket with 1009.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 4_096)]
    pub max_frame_bytes: usize,

    /// Largest room, in members; a new member beyond it gets `room_full` and 1013.
    #[arg(long, env = "MAX_ROOM_MEMBERS", default_value_t = 10_000)]
    pub max_room_members: usize,

    /// Sustained inbound messages per second per socket.
    #[arg(long, env = "RATE_PER_SEC", default_value_t = 20)]
    pub rate_per_sec: u32,

    /// Inbound burst per socket above the sustained rate. A socket over the limit is
    /// told once (`rate_limited`) and closed with 1008 if it sends as much again.
    #[arg(long, env = "RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Frames (rosters, diffs and events, over every room) this instance writes at once
    /// within one BROADCAST_INTERVAL_MS; beyond it, each room's changes merge into one
    /// frame per socket per interval until the instance is under budget again. Default
    /// 5,000: a change goes out at once at any human pace, a meeting of hundreds
    /// starting included, while a storm of a thousand joins at once (or a 10,000-member
    /// room changing) cannot make the instance write N^2 frames. [default: 5000]
    #[arg(long, env = "BROADCAST_FRAMES")]
    pub broadcast_frames: Option<u32>,

    /// Replaced by BROADCAST_FRAMES (it was broadcasts per room per interval, capped at
    /// BROADCAST_BURST x 1,000 frames per instance): still accepted, with a warning, as
    /// BROADCAST_FRAMES = BROADCAST_BURST x 1,000.
    #[arg(long, env = "BROADCAST_BURST", hide = true)]
    pub broadcast_burst: Option<u32>,

    /// The fan-out budget's interval, and how long a merging room's changes wait.
    #[arg(long, env = "BROADCAST_INTERVAL_MS", default_value_t = 100)]
    pub broadcast_interval_ms: u64,

    /// Outbound backlog bound per socket, in bytes: the diffs and events queued after its
    /// latest full roster (which is always let through, whatever its size). A socket
    /// behind by more has its queued rosters replaced by the latest snapshot, and is
    /// closed with 1013 if that keeps happening.
    #[arg(long, env = "OUTBOX_BYTES", default_value_t = 1 << 20)]
    pub outbox_bytes: usize,

    /// On SIGTERM/SIGINT: how long to wait for sockets to take their 1012 close.
    #[arg(long, env = "DRAIN_MS", default_value_t = 2_000)]
    pub drain_ms: u64,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Who may join: `off` (anonymous only, display hints as sent), `optional` (verified
    /// and anonymous users side by side), `required` (a valid token or close 4401).
    #[arg(long, env = "AUTH", value_enum, default_value = "off")]
    pub auth: AuthMode,

    /// HS256 secret that tokens are signed with (at least 32 bytes).
    #[arg(long, env = "AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// JWKS URL of an identity provider, for RS256, ES256 and EdDSA tokens.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,

    /// A token naming a key id the JWKS cache does not hold refetches the JWKS at most
    /// this often, so a flood of made-up key ids costs the provider one request per interval.
    #[arg(long, env = "AUTH_JWKS_REFRESH_MS", default_value_t = 60_000)]
    pub auth_jwks_refresh_ms: u64,

    /// Required `iss` of every token, when set.
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// Required `aud` of every token, when set.
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds: the server's and the token
    /// issuer's clocks never agree exactly.
    #[arg(long, env = "AUTH_LEEWAY_SECS", default_value_t = 30)]
    pub auth_leeway_secs: u64,

    /// Origins allowed to open sockets, comma-separated (`https://app.example.com`,
    /// `https://*.example.com`, or `*`). Default: any with AUTH=off, else only pages of
    /// the host the request was sent to. Others get HTTP 403 before the upgrade.
    #[arg(long, env = "ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// Open sockets per client address (IPv6: per /64); over it, HTTP 429 before the
    /// upgrade. Default: 100, or off with AUTH=off (benchmarks open 20,000 from one
    /// address). 0 = off.
    #[arg(long, env = "MAX_SOCKETS_PER_IP")]
    pub max_sockets_per_ip: Option<u32>,

    /// Upgrade requests per second per client address, with a burst of twice that; over
    /// it, HTTP 429. Default: 20, or off with AUTH=off. 0 = off.
    #[arg(long, env = "HANDSHAKES_PER_IP_PER_SEC")]
    pub handshakes_per_ip_per_sec: Option<u32>,

    /// Proxies whose X-Forwarded-For and X-Forwarded-Host are believed, as comma-separated
    /// CIDRs. The client is the right-most X-Forwarded-For address outside them.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Bearer token for GET /server/rooms/:roomId and /server/metrics. Unset: open, except
    /// with AUTH=required, where both answer 401.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Serve /metrics on this separate address (`127.0.0.1:9090`) instead of
    /// /server/metrics, the usual Prometheus set-up on a private port.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Development only: GET /server/dev/token mints a token for any name (the demo's
    /// sign-in). Needs AUTH_SECRET and AUTH optional or required.
    #[arg(long, env = "DEV_TOKENS", default_value_t = false)]
    pub dev_tokens: bool,

    /// Confirms DEV_TOKENS with AUTH=required: anyone could then sign in as anyone.
    #[arg(long, env = "DEV_TOKENS_I_KNOW", default_value_t = false)]
    pub dev_tokens_i_know: bool,

    /// Read .env.local, then .env, from the working directory at start, without
    /// overriding variables already set (as `vercel env pull` writes them). `make test`
    /// and `make bench` turn it off, so a pulled production REDIS_URL never reaches a test.
    #[arg(long, env = "HERENOW_DOTENV", default_value_t = true, action = ArgAction::Set,
          value_parser = BoolishValueParser::new(), value_name = "BOOL", hide_possible_values = true)]
    pub dotenv: bool,

    /// Set by Vercel on its functions (not by you). Without REDIS_URL there, every
    /// function instance keeps rooms of its own: warned at start and in /server/readyz.
    #[arg(long, env = "VERCEL", default_value_t = false, value_name = "BOOL",
          action = ArgAction::Set, value_parser = BoolishValueParser::new(), hide_possible_values = true)]
    pub vercel: bool,
}

/// `herenow token --sub ada --name Ada --rooms 'design-*' --ttl 1h`
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// The user's stable id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Avatar URL (https://).
    #[arg(long)]
    pub avatar: Option<String>,
    /// Color, #rrggbb.
    #[arg(long)]
    pub color: Option<String>,
    /// Room patterns, comma-separated (`*` is a wildcard); absent = every room.
    #[arg(long, value_delimiter = ',')]
    pub rooms: Option<Vec<String>>,
    /// `member` or `viewer`.
    #[arg(long, value_enum, default_value = "member")]
    pub role: RoleArg,
    /// Lifetime: `90s`, `15m`, `1h`, `7d`, or seconds.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Member,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Member => Role::Member,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// `90s`, `15m`, `1h`, `7d` or plain seconds.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (num, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration like 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{raw:?}: the unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("the ttl must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// The fan-out budget without a setting (see [`Config::broadcast_frames`]).
pub const DEFAULT_BROADCAST_FRAMES: u32 = 5_000;

/// Frames per socket-interval the old per-room burst allowed an instance (see
/// `BROADCAST_BURST`).
const FRAMES_PER_BURST: u32 = 1_000;

impl Config {
    /// The defaults, as if started with no flags and an empty environment.
    pub fn defaults() -> Config {
        Config::parse_from_env_free(["herenow"])
    }

    /// Parse `args` ignoring the environment (tests must not depend on the caller's env).
    pub fn parse_from_env_free<I, T>(args: I) -> Config
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = without_env(Config::command()).get_matches_from(args);
        Config::from_arg_matches(&matches).expect("clap checked the arguments")
    }

    /// Relations between settings that must hold; a message for the first that does not.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 3 > self.stale_ms {
            return Err("HEARTBEAT_MS must be positive and at most STALE_MS / 3".into());
        }
        if self
            .ping_ms
            .is_some_and(|p| p == 0 || p * 2 > self.stale_ms)
        {
            return Err("PING_MS must be positive and at most STALE_MS / 2, or sockets that only answer pings are dropped as stale".into());
        }
        if self.reap_ms == 0 || self.reap_ms * 3 > self.lease_ms {
            return Err("REAP_MS must be positive and at most LEASE_MS / 3".into());
        }
        if self.lease_ms < self.grace_ms {
            return Err("LEASE_MS must be at least GRACE_MS, so a restarting instance's members survive its grace window".into());
        }
        if self.max_frame_bytes < 256 {
            return Err("MAX_FRAME_BYTES must be at least 256".into());
        }
        if self.rate_per_sec == 0 || self.broadcast_frames() == 0 || self.broadcast_interval_ms == 0
        {
            return Err("rates, bursts and intervals must be positive".into());
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(['{', '}', ' ']) {
            return Err("REDIS_PREFIX must be non-empty, without braces or spaces".into());
        }
        self.check_auth()
    }

    fn check_auth(&self) -> Result<(), String> {
        if let Some(secret) = &self.auth_secret {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!("AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes (try: openssl rand -hex 32)"));
            }
        }
        if let Some(url) = &self.auth_jwks_url {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err("AUTH_JWKS_URL must be an http(s):// URL".into());
            }
        }
        if self.auth != AuthMode::Off && self.auth_secret.is_none() && self.auth_jwks_url.is_none()
        {
            return Err("AUTH=optional or required needs AUTH_SECRET or AUTH_JWKS_URL".into());
        }
        if self.auth_jwks_refresh_ms == 0 {
            return Err("AUTH_JWKS_REFRESH_MS must be positive".into());
        }
        crate::access::Origins::parse(self.allowed_origins.as_deref(), self.auth == AuthMode::Off)?;
        crate::access::parse_cidrs(&self.trusted_proxies)
            .map_err(|e| format!("TRUSTED_PROXIES: {e}"))?;
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("ADMIN_TOKEN must be at least 16 characters".into());
        }
        if self.dev_tokens {
            if self.auth == AuthMode::Off || self.auth_secret.is_none() {
                return Err(
                    "DEV_TOKENS=true needs AUTH=optional or required, and AUTH_SECRET".into(),
                );
            }
            if self.auth == AuthMode::Required && !self.dev_tokens_i_know {
                return Err("DEV_TOKENS=true with AUTH=required lets anyone sign in as anyone: also set DEV_TOKENS_I_KNOW=true if that is really what you want".into());
            }
        }
        Ok(())
    }

    /// The auth settings, as the verifier takes them.
    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            mode: self.auth,
            secret: self.auth_secret.clone(),
            jwks_url: self.auth_jwks_url.clone(),
            jwks_refresh: Duration::from_millis(self.auth_jwks_refresh_ms),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
            leeway_secs: self.auth_leeway_secs,
        }
    }

    /// `MAX_SOCKETS_PER_IP` with its mode-dependent default; `None` = off.
    pub fn sockets_per_ip(&self) -> Option<u32> {
        let default = (self.auth != AuthMode::Off).then_some(DEFAULT_SOCKETS_PER_IP);
        self.max_sockets_per_ip
            .map_or(default, |n| (n > 0).then_some(n))
    }

    /// `HANDSHAKES_PER_IP_PER_SEC` with its mode-dependent default; `None` = off.
    pub fn handshakes_per_ip(&self) -> Option<u32> {
        let default = (self.auth != AuthMode::Off).then_some(DEFAULT_HANDSHAKES_PER_IP_PER_SEC);
        self.handshakes_per_ip_per_sec
            .map_or(default, |n| (n > 0).then_some(n))
    }

    /// Settings that work but deserve a word, and deployments that work but not as one
    /// would expect: said loudly at start and in `/server/readyz`, while they hold.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(burst) = self.broadcast_burst {
            out.push(match self.broadcast_frames {
                Some(frames) => format!(
                    "BROADCAST_BURST={burst} is replaced by BROADCAST_FRAMES and ignored (BROADCAST_FRAMES={frames} is set)"
                ),
                None => format!(
                    "BROADCAST_BURST={burst} is replaced by BROADCAST_FRAMES: using BROADCAST_FRAMES={}; set that instead",
                    self.broadcast_frames()
                ),
            });
        }
        if self.vercel && self.redis_url.is_none() {
            out.push(
                "VERCEL is set and REDIS_URL is not: each Vercel function instance keeps its \
                 own rooms, so people whose sockets land on different instances do not see \
                 each other. Add Redis to the project (Vercel Marketplace, e.g. Upstash) so \
                 REDIS_URL is set."
                    .to_string(),
            );
        }
        out
    }

    /// The instance's fan-out budget, in frames per BROADCAST_INTERVAL_MS.
    pub fn broadcast_frames(&self) -> u32 {
        match (self.broadcast_frames, self.broadcast_burst) {
            (Some(frames), _) => frames,
            (None, Some(burst)) => burst.saturating_mul(FRAMES_PER_BURST),
            (None, None) => DEFAULT_BROADCAST_FRAMES,
        }
    }

    pub fn stale(&self) -> Duration {
        Duration::from_millis(self.stale_ms)
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
    pub fn reap(&self) -> Duration {
        Duration::from_millis(self.reap_ms)
    }
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
    pub fn ping(&self) -> Duration {
        Duration::from_millis(self.ping_ms.unwrap_or(self.stale_ms / 2))
    }
    pub fn typing_timeout(&self) -> Duration {
        Duration::from_millis(self.typing_timeout_ms)
    }
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }
    pub fn broadcast_interval(&self) -> Duration {
        Duration::from_millis(self.broadcast_interval_ms)
    }
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_ms)
    }
}

/// An env file that exists but cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct EnvFileError {
    pub path: PathBuf,
    #[source]
    pub source: dotenvy::Error,
}

/// Read [`ENV_FILES`] from `dir` into the process environment, never overriding a
/// variable already set. Returns the files read (missing ones are skipped). Call it
/// before any thread reads the environment, i.e. before the runtime starts.
pub fn load_env_files(dir: &Path) -> Result<Vec<PathBuf>, EnvFileError> {
    let mut read = Vec::new();
    for name in ENV_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        dotenvy::from_path(&path).map_err(|source| EnvFileError {
            path: path.clone(),
            source,
        })?;
        read.push(path);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::defaults();
        assert_eq!(c.port, 3000);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.stale_ms, 30_000);
        assert_eq!(c.heartbeat_ms, 5_000);
        assert_eq!(c.lease_ms, 6_000);
        assert_eq!(c.reap_ms, 2_000);
        assert_eq!(c.grace_ms, 3_000);
        assert_eq!(c.ping(), Duration::from_millis(15_000));
        assert_eq!(c.typing_timeout_ms, 5_000);
        assert_eq!(c.hello_timeout_ms, 10_000);
        assert_eq!(c.max_frame_bytes, 4_096);
        assert_eq!(c.max_room_members, 10_000);
        assert_eq!((c.rate_per_sec, c.rate_burst), (20, 40));
        assert_eq!(
            (c.broadcast_frames(), c.broadcast_interval_ms),
            (5_000, 100)
        );
        assert!(c.warnings().is_empty());
        assert_eq!(c.redis_prefix, "presence");
        assert!(c.redis_url.is_none() && !c.redis_cluster && c.static_dir.is_none());
        assert!(c.redis_ca_file.is_none());
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert_eq!(c.auth, AuthMode::Off);
        assert_eq!((c.auth_jwks_refresh_ms, c.auth_leeway_secs), (60_000, 30));
        assert_eq!((c.sockets_per_ip(), c.handshakes_per_ip()), (None, None));
        assert!(c.admin_token.is_none() && c.metrics_addr.is_none() && !c.dev_tokens);
        assert!(c.dotenv && !c.vercel);
        assert!(c.warnings().is_empty());
        c.check().unwrap();
        // A crashed instance is gone everywhere within 10 s by default.
        assert!(c.lease_ms + c.reap_ms <= 10_000);
    }

    #[test]
    fn the_old_burst_setting_still_works_with_a_warning() {
        let c = Config::parse_from_env_free(["herenow", "--broadcast-burst", "3"]);
        assert_eq!(c.broadcast_frames(), 3_000);
        assert_eq!(c.warnings().len(), 1);
        let c = Config::parse_from_env_free([
            "herenow",
            "--broadcast-burst",
            "3",
            "--broadcast-frames",
            "700",
        ]);
        assert_eq!(c.broadcast_frames(), 700);
        assert!(c.warnings()[0].contains("ignored"));
    }

    #[test]
    fn bad_relations_are_refused() {
        let c = Config::parse_from_env_free(["herenow", "--heartbeat-ms", "20000"]);
        assert!(c.check().is_err());
        let c = Config::parse_from_env_free(["herenow", "--lease-ms", "1000"]);
        assert!(c.check().is_err());
        let c = Config::parse_from_env_free(["herenow", "--redis-prefix", "a{b}"]);
        assert!(c.check().is_err());
        // A socket that only answers pings would be dropped as stale between two pings.
        let c = Config::parse_from_env_free([
            "herenow",
            "--stale-ms",
            "3000",
            "--heartbeat-ms",
            "1000",
            "--ping-ms",
            "2000",
        ]);
        assert!(c.check().unwrap_err().contains("PING_MS"));
    }

    #[test]
    fn pings_follow_a_shorter_stale_window() {
        let c = Config::parse_from_env_free([
            "herenow",
            "--stale-ms",
            "3000",
            "--heartbeat-ms",
            "1000",
        ]);
        c.check().unwrap();
        assert_eq!(c.ping(), Duration::from_millis(1_500));
        let c = Config::parse_from_env_free(["herenow", "--ping-ms", "5000"]);
        assert_eq!(c.ping(), Duration::from_millis(5_000));
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn auth_settings_are_checked() {
        let ok = |args: &[&str]| {
            let mut all = vec!["herenow"];
            all.extend_from_slice(args);
            Config::parse_from_env_free(all).check()
        };
        assert!(ok(&["--auth", "required"]).is_err(), "needs a key");
        assert!(ok(&["--auth", "required", "--auth-secret", "short"]).is_err());
        assert!(ok(&["--auth", "required", "--auth-secret", SECRET]).is_ok());
        assert!(ok(&[
            "--auth",
            "optional",
            "--auth-jwks-url",
            "https://id.example/jwks"
        ])
        .is_ok());
        assert!(ok(&[
            "--auth",
            "optional",
            "--auth-jwks-url",
            "file:///etc/passwd"
        ])
        .is_err());
        assert!(ok(&["--allowed-origins", "app.example"]).is_err());
        assert!(ok(&["--trusted-proxies", "10.0.0.0/99"]).is_err());
        assert!(ok(&["--admin-token", "short"]).is_err());
        assert!(ok(&["--dev-tokens"]).is_err(), "not with AUTH=off");
        assert!(ok(&[
            "--dev-tokens",
            "--auth",
            "optional",
            "--auth-secret",
            SECRET
        ])
        .is_ok());
        let required = [
            "--dev-tokens",
            "--auth",
            "required",
            "--auth-secret",
            SECRET,
        ];
        assert!(
            ok(&required).is_err(),
            "required + dev tokens needs the confirmation"
        );
        let mut confirmed = required.to_vec();
        confirmed.push("--dev-tokens-i-know");
        assert!(ok(&confirmed).is_ok());
    }

    #[test]
    fn per_address_limits_default_by_auth_mode() {
        let c =
            Config::parse_from_env_free(["herenow", "--auth", "optional", "--auth-secret", SECRET]);
        assert_eq!(
            (c.sockets_per_ip(), c.handshakes_per_ip()),
            (Some(100), Some(20))
        );
        let c = Config::parse_from_env_free([
            "herenow",
            "--auth",
            "required",
            "--auth-secret",
            SECRET,
            "--max-sockets-per-ip",
            "0",
            "--handshakes-per-ip-per-sec",
            "5",
        ]);
        assert_eq!((c.sockets_per_ip(), c.handshakes_per_ip()), (None, Some(5)));
        let c = Config::parse_from_env_free(["herenow", "--max-sockets-per-ip", "3"]);
        assert_eq!((c.sockets_per_ip(), c.handshakes_per_ip()), (Some(3), None));
    }

    #[test]
    fn the_token_subcommand_and_ttls() {
        let c = Cli::parse_from_env_free([
            "herenow",
            "token",
            "--sub",
            "ada",
            "--name",
            "Ada",
            "--rooms",
            "design-*,lobby",
            "--ttl",
            "2h",
        ]);
        match c.command {
            Some(Command::Token(t)) => {
                assert_eq!(t.sub, "ada");
                assert_eq!(t.rooms.unwrap(), ["design-*", "lobby"]);
                assert_eq!(t.ttl, Duration::from_secs(7200));
                assert_eq!(t.role, RoleArg::Member);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_ttl("42").unwrap(), Duration::from_secs(42));
        for bad in ["", "h", "1w", "0", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vercel_without_redis_is_warned() {
        let c = Config::parse_from_env_free(["herenow", "--vercel", "1"]);
        assert_eq!(c.warnings().len(), 1);
        assert!(c.warnings()[0].contains("REDIS_URL"));
        let c = Config::parse_from_env_free([
            "herenow",
            "--vercel",
            "true",
            "--redis-url",
            "redis://127.0.0.1:1",
        ]);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn dotenv_takes_boolish_values() {
        assert!(!Config::parse_from_env_free(["herenow", "--dotenv", "0"]).dotenv);
        assert!(Config::parse_from_env_free(["herenow", "--dotenv", "yes"]).dotenv);
    }

    #[test]
    fn no_command_serves_and_healthcheck_keeps_the_server_settings() {
        let cli = Cli::parse_from_env_free(["herenow", "--port", "4000"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.config.port, 4000);
        let cli = Cli::parse_from_env_free([
            "herenow",
            "--port",
            "4001",
            "healthcheck",
            "--timeout-ms",
            "500",
        ]);
        assert_eq!(cli.config.port, 4001);
        let Some(Command::Healthcheck(args)) = cli.command else {
            panic!("healthcheck expected")
        };
        assert_eq!((args.url, args.timeout_ms), (None, 500));
    }
}
