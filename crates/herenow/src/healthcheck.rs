//! `herenow healthcheck`: one HTTP GET of the server's health endpoint, for a container's
//! HEALTHCHECK. Slim images have no curl, and the binary is already there; plain HTTP
//! over one TCP connection is all it needs.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read: the status line is all that counts.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why the check failed; the message is what the container's health log shows.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{url} is not a URL this check can use: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from {url} within {ms} ms")]
    Timeout { url: String, ms: u128 },
    #[error("{url} answered something that is not HTTP")]
    NotHttp { url: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
}

/// The health URL of a server listening on `host:port`: an unspecified address (what a
/// server binds to listen everywhere) is reached on the loopback of the same family.
pub fn default_url(host: IpAddr, port: u16) -> String {
    let host = match host {
        IpAddr::V4(a) if a.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(a) if a.is_unspecified() => "[::1]".to_string(),
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    format!("http://{host}:{port}/server/healthz")
}

/// GET `url`; `Ok(status)` for a 2xx answer within `timeout`.
pub async fn check(url: &str, timeout: Duration) -> Result<u16, HealthcheckError> {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(result) => result,
        Err(_) => Err(HealthcheckError::Timeout {
            url: url.to_string(),
            ms: timeout.as_millis(),
        }),
    }
}

async fn get(url: &str) -> Result<u16, HealthcheckError> {
    let (authority, path) = split_url(url)?;
    let mut stream =
        TcpStream::connect(&authority)
            .await
            .map_err(|source| HealthcheckError::Connect {
                url: url.to_string(),
                source,
            })?;
    let io = |source| HealthcheckError::Io {
        url: url.to_string(),
        source,
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: herenow-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    // The status line is enough: stop at its end rather than waiting for the body.
    while !answer.contains(&b'\n') && answer.len() < MAX_ANSWER_BYTES {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let status = status_of(&answer).ok_or_else(|| HealthcheckError::NotHttp {
        url: url.to_string(),
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(HealthcheckError::Status {
            url: url.to_string(),
            status,
        })
    }
}

/// `http://host[:port][/path]` -> ("host:port", "/path").
fn split_url(url: &str) -> Result<(String, String), HealthcheckError> {
    let bad = |why| HealthcheckError::BadUrl {
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// The status code of an HTTP/1.x status line.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_urls_reach_the_loopback_for_unspecified_hosts() {
        let url = |h: &str| default_url(h.parse().unwrap(), 3000);
        assert_eq!(url("0.0.0.0"), "http://127.0.0.1:3000/server/healthz");
        assert_eq!(url("::"), "http://[::1]:3000/server/healthz");
        assert_eq!(url("10.1.2.3"), "http://10.1.2.3:3000/server/healthz");
        assert_eq!(url("fd00::1"), "http://[fd00::1]:3000/server/healthz");
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        let s = |u: &str| split_url(u).unwrap();
        assert_eq!(s("http://a:1/x/y"), ("a:1".into(), "/x/y".into()));
        assert_eq!(s("http://a"), ("a:80".into(), "/".into()));
        assert_eq!(s("http://[::1]/h"), ("[::1]:80".into(), "/h".into()));
        assert_eq!(s("http://[::1]:9/h"), ("[::1]:9".into(), "/h".into()));
        assert!(split_url("https://a/").is_err());
        assert!(split_url("http:///x").is_err());
    }

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
