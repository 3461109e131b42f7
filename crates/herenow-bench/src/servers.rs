//! The processes a scenario runs against: herenow instances and a `redis-server`, each on
//! a free loopback port, each killed when its handle drops (also on panic) and, through
//! `PR_SET_PDEATHSIG`, when the bench itself dies.

use crate::redis;
use anyhow::{anyhow, bail, Context, Result};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A free TCP port on 127.0.0.1 (the kernel picks it; there is a short window in which
/// another process could take it, which nothing else on a bench machine does).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Spawns with the child tied to this process's lifetime.
fn spawn(mut cmd: Command) -> Result<Child> {
    cmd.kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// Where logs of the processes of one run go.
pub fn log_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("herenow-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A `redis-server` without persistence.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Redis {
    pub async fn start(dir: &Path) -> Result<Redis> {
        let mut r = Redis {
            child: None,
            port: free_port()?,
            dir: dir.to_path_buf(),
        };
        r.spawn().await?;
        Ok(r)
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxclients", "10000", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        self.child =
            Some(spawn(cmd).context(
                "starting redis-server (install it with: apt-get install -y redis-server)",
            )?);
        redis::wait_ping(self.addr(), Duration::from_secs(10)).await
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (its data goes with it: no persistence).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        self.spawn().await
    }
}

/// One herenow process.
pub struct Herenow {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// How to start herenow instances.
#[derive(Debug, Clone)]
pub struct Launch {
    pub bin: PathBuf,
    /// Extra environment (`KEY=VALUE`), applied after the bench's defaults.
    pub env: Vec<(String, String)>,
    pub log_dir: PathBuf,
}

impl Herenow {
    pub async fn start(l: &Launch, index: usize, redis_url: Option<&str>) -> Result<Herenow> {
        if !l.bin.exists() {
            bail!(
                "herenow binary {} not found (build it, or pass --bin / HERENOW_BIN)",
                l.bin.display()
            );
        }
        let log = l.log_dir.join(format!("herenow-{index}.log"));
        let err = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&l.bin);
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL");
        if let Some(url) = redis_url {
            cmd.env("REDIS_URL", url);
        }
        for (k, v) in &l.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = spawn(cmd)?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("herenow exited at once"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), lines.read_line(&mut first)).await;
        let addr = match read {
            Ok(Ok(n)) if n > 0 => parse_listening(&first)
                .ok_or_else(|| anyhow!("unexpected first stdout line from herenow: {first:?}"))?,
            _ => bail!(
                "herenow did not print its listening line within 30 s (log: {})",
                log.display()
            ),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        let mut out_log =
            tokio::fs::File::create(l.log_dir.join(format!("herenow-{index}.out"))).await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = lines.read(&mut buf).await {
                if n == 0 || out_log.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        Ok(Herenow {
            child: Some(child),
            addr,
            pid,
        })
    }

    /// SIGKILL, as a crashed host would.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }
}

impl Drop for Herenow {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// `herenow listening on http://<addr>:<port>` -> the address (a 0.0.0.0 host is
/// reached through 127.0.0.1).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("herenow listening on http://")?;
    let mut addr: SocketAddr = rest.trim_end_matches('/').parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    Some(addr)
}

/// The instances (and Redis) of one scenario.
pub struct Cluster {
    pub redis: Option<Redis>,
    pub servers: Vec<Herenow>,
}

impl Cluster {
    /// Starts Redis when asked (or when more than one instance needs it) and the instances.
    pub async fn start(launch: Launch, instances: usize, with_redis: bool) -> Result<Cluster> {
        let redis = if with_redis {
            Some(Redis::start(&launch.log_dir).await?)
        } else {
            None
        };
        let url = redis.as_ref().map(Redis::url);
        let mut servers = Vec::new();
        for i in 0..instances.max(1) {
            servers.push(Herenow::start(&launch, i, url.as_deref()).await?);
        }
        for s in &servers {
            wait_http_ok(s.addr, "/server/readyz", Duration::from_secs(20))
                .await
                .with_context(|| format!("instance at {} never became ready", s.addr))?;
        }
        Ok(Cluster { redis, servers })
    }

    /// A Prometheus counter (or gauge) summed over the instances; 0 where it is absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for s in &self.servers {
            if let Ok((200, body)) = http_get(s.addr, "/server/metrics").await {
                sum += parse_metric(&body, name).unwrap_or(0.0);
            }
        }
        sum
    }

    /// Addresses (`ip:port`) of each instance's connections to Redis, for attributing
    /// `MONITOR` lines to instances.
    pub fn redis_client_addrs(&self) -> Vec<Vec<String>> {
        let Some(r) = &self.redis else {
            return vec![Vec::new(); self.servers.len()];
        };
        self.servers
            .iter()
            .map(|s| {
                connections_to(s.pid, r.port)
                    .into_iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect()
            })
            .collect()
    }
}

/// The value of an unlabelled sample `name` in a Prometheus text exposition.
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Local ports of the TCP connections process `pid` holds to 127.0.0.1:`port`: the
/// socket inodes under `/proc/<pid>/fd` matched against `/proc/net/tcp`.
pub fn connections_to(pid: u32, port: u16) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|p| {
            let s = p.to_string_lossy().into_owned();
            Some(s.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    parse_tcp_table(&table)
        .into_iter()
        .filter(|(_, remote, inode)| *remote == port && inodes.contains(inode))
        .map(|(local, _, _)| local)
        .collect()
}

/// `(local port, remote port, inode)` of each row of `/proc/net/tcp`.
pub fn parse_tcp_table(table: &str) -> Vec<(u16, u16, String)> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = |s: &str| u16::from_str_radix(s.rsplit(':').next()?, 16).ok();
            Some((port(f.get(1)?)?, port(f.get(2)?)?, f.get(9)?.to_string()))
        })
        .collect()
}

/// A `GET` over a fresh connection: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        parse_http_response(&String::from_utf8_lossy(&buf))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .context("HTTP request timed out")?
}

/// Status and body of an HTTP/1.1 response (plain or chunked body).
pub fn parse_http_response(raw: &str) -> Result<(u16, String)> {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("no status line"))?
        .parse()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16)?;
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    Ok((status, out))
}

/// Polls `path` until it answers 200.
pub async fn wait_http_ok(addr: SocketAddr, path: &str, within: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match http_get(addr, path).await {
            Ok((200, _)) => return Ok(()),
            Ok((s, b)) => format!("status {s}: {b}"),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{path} not ready within {within:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_name() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total 12\nx_total_more 3\n";
        assert_eq!(parse_metric(text, "x_total"), Some(12.0));
        assert_eq!(parse_metric(text, "y"), None);
    }

    #[test]
    fn listening_line() {
        assert_eq!(
            parse_listening("herenow listening on http://127.0.0.1:4321\n"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(
            parse_listening("herenow listening on http://0.0.0.0:80"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_listening("something else"), None);
    }

    #[test]
    fn http_responses() {
        let plain = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_http_response(plain).unwrap(), (200, "ok".into()));
        let chunked = "HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n\
                       3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap(), (503, "abcde".into()));
        assert!(parse_http_response("garbage").is_err());
    }

    #[test]
    fn tcp_table_rows() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                 0: 0100007F:9C40 0100007F:18EB 01 00000000:00000000 00:00000000 00000000     0        0 98765 1 0\n";
        assert_eq!(
            parse_tcp_table(t),
            vec![(0x9C40, 0x18EB, "98765".to_string())]
        );
    }
}
