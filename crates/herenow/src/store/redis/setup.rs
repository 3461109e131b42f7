//! What a connection needs before it is tried, and which failures no retry can fix.
//!
//! `REDIS_URL` is checked (scheme, syntax) and `REDIS_CA_FILE` read before every
//! connection attempt, so a CA file replaced on disk is picked up by the next reconnect.
//! A failed attempt is sorted here: a refused password, a rejected certificate, a TLS
//! handshake that cannot succeed or a URL that cannot parse is a [`StartError`], which
//! stops the process when it happens on the first attempt at start
//! ([`super::RedisStore::open`]); anything else (refused, timed out, a name that does not
//! resolve yet) may heal and is an outage. After a successful start every failure is an
//! outage; a [`StartError`] then only makes the health detail say what to fix.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redis::{ErrorKind, RedisError, TlsCertificates};

use super::RedisOptions;

/// A Redis setting that cannot work, found at start: the one line the process exits
/// with. Each message names the setting and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Not a URL the Redis client can read.
    #[error("REDIS_URL: `{url}` is not a Redis URL; write redis://[user:password@]host:port[/db], or rediss://... for TLS")]
    BadUrl { url: String },
    /// A scheme other than redis:// or rediss://.
    #[error("REDIS_URL: unknown scheme `{scheme}`; write redis://host:port, or rediss://host:port for TLS")]
    UnknownScheme { scheme: String },
    /// Settings the client refuses as a whole (seed nodes that disagree, say).
    #[error("REDIS_URL: the Redis client refuses it ({detail}); check REDIS_URL (the seed nodes of a cluster share one scheme, user and password)")]
    Config { detail: String },
    /// `REDIS_CA_FILE` cannot be read.
    #[error("REDIS_CA_FILE: cannot read {path}: {reason}; give the path of the CA certificate (PEM) that signed the Redis server's certificate")]
    CaUnreadable { path: PathBuf, reason: String },
    /// `REDIS_CA_FILE` holds no usable certificate.
    #[error("REDIS_CA_FILE: {path} holds no usable CA certificate ({reason}); give the CA certificate in PEM (-----BEGIN CERTIFICATE-----)")]
    CaNotPem { path: PathBuf, reason: String },
    /// A CA file for a connection without TLS.
    #[error("REDIS_CA_FILE is set but REDIS_URL does not use TLS; write rediss:// to connect with TLS, or unset REDIS_CA_FILE")]
    CaWithoutTls,
    /// `WRONGPASS`.
    #[error("REDIS_URL: redis rejected the password (WRONGPASS); check the user name and password in REDIS_URL")]
    WrongPassword,
    /// `NOAUTH`.
    #[error("REDIS_URL: redis requires a password (NOAUTH); put it in REDIS_URL, as in rediss://default:PASSWORD@host:port")]
    NoPassword,
    /// `NOPERM`: the user's ACL denies a command the store needs.
    #[error("REDIS_URL: the redis user may not run a command herenow needs (NOPERM {detail}); allow the commands listed in the README's Redis section for this user")]
    NoPermission { detail: String },
    /// The server's certificate failed verification.
    #[error("REDIS_URL: the TLS certificate of {target} was rejected ({reason}); {fix}")]
    CertificateRejected {
        target: String,
        reason: String,
        fix: String,
    },
    /// A TLS handshake that failed for another reason than the certificate.
    #[error("REDIS_URL: TLS with {target} failed ({reason}); check that this port speaks TLS, or write redis:// for a server without TLS")]
    Tls { target: String, reason: String },
}

impl RedisOptions {
    /// Does the connection use TLS (`rediss://`)?
    pub(super) fn tls(&self) -> bool {
        self.urls
            .first()
            .and_then(|u| scheme(u))
            .is_some_and(|s| s == "rediss" || s == "valkeys")
    }

    /// Everything that can be checked without connecting: the URLs parse with a known
    /// scheme, and the CA file, if any, is a PEM certificate for a TLS connection.
    pub fn check(&self) -> Result<(), StartError> {
        for url in &self.urls {
            match scheme(url) {
                Some(s) if KNOWN_SCHEMES.contains(&s.as_str()) => {}
                Some(s) => return Err(StartError::UnknownScheme { scheme: s + "://" }),
                None => return Err(StartError::BadUrl { url: redact(url) }),
            }
            if redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
                return Err(StartError::BadUrl { url: redact(url) });
            }
        }
        self.certificates().map(drop)
    }

    /// The TLS material of a connection: the CA of `REDIS_CA_FILE` instead of the
    /// built-in roots, or `None` to use those (or for no TLS).
    pub(super) fn certificates(&self) -> Result<Option<TlsCertificates>, StartError> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        if !self.tls() {
            return Err(StartError::CaWithoutTls);
        }
        let pem = read_ca(path)?;
        Ok(Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }

    /// A failure that no retry can fix, in words a person can act on; `None` for one
    /// that may heal.
    pub(super) fn fatal(&self, err: &RedisError) -> Option<StartError> {
        if err.kind() == ErrorKind::InvalidClientConfig {
            let detail = err
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Some(StartError::Config { detail });
        }
        // The cluster client flattens the cause of a failed first connection into text
        // ("Failed to create initial connections - Io: \"WRONGPASS\": ..."), so the
        // codes are looked for in the text too.
        let text = err.to_string();
        let code = err.code().map(str::to_string).or_else(|| {
            ["WRONGPASS", "NOAUTH", "NOPERM"]
                .into_iter()
                .find(|c| text.contains(&format!("\"{c}\"")))
                .map(String::from)
        });
        match code.as_deref() {
            Some("WRONGPASS") => return Some(StartError::WrongPassword),
            Some("NOAUTH") => return Some(StartError::NoPassword),
            Some("NOPERM") => {
                let detail = err.detail().unwrap_or(&text).to_string();
                return Some(StartError::NoPermission { detail });
            }
            _ => {}
        }
        let target = self.target();
        match tls_error(err) {
            Some(rustls::Error::InvalidCertificate(cert)) => Some(self.rejected(target, cert)),
            Some(other) => Some(StartError::Tls {
                target,
                reason: other.to_string(),
            }),
            // Again the cluster's flattened text: rustls says "invalid peer certificate".
            None if text.contains("invalid peer certificate") => {
                Some(StartError::CertificateRejected {
                    target,
                    reason: text
                        .rsplit("invalid peer certificate: ")
                        .next()
                        .unwrap_or(&text)
                        .to_string(),
                    fix: self.ca_fix(),
                })
            }
            None => None,
        }
    }

    fn rejected(&self, target: String, cert: &rustls::CertificateError) -> StartError {
        use rustls::CertificateError as C;
        let fix = match cert {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the certificate does not name the host in REDIS_URL; connect by a name it lists"
                    .to_string()
            }
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                "the certificate is outside its validity period; renew it, or check this machine's clock"
                    .to_string()
            }
            _ => self.ca_fix(),
        };
        let reason = match cert {
            C::NotValidForNameContext { .. } => "NotValidForName".to_string(),
            C::ExpiredContext { .. } => "Expired".to_string(),
            C::NotValidYetContext { .. } => "NotValidYet".to_string(),
            other => format!("{other:?}"),
        };
        StartError::CertificateRejected {
            target,
            reason,
            fix,
        }
    }

    fn ca_fix(&self) -> String {
        match &self.ca_file {
            Some(path) => format!(
                "REDIS_CA_FILE ({}) does not hold the CA that signed it; give that CA's certificate",
                path.display()
            ),
            None => "if it comes from a private CA, set REDIS_CA_FILE to that CA's certificate (PEM)"
                .into(),
        }
    }

    /// What a person may want to know about a failure that may heal: the likely cause
    /// when the scheme and the server disagree about TLS.
    pub(super) fn hint(&self, err: &RedisError) -> Option<&'static str> {
        let dropped = err.is_connection_dropped() && !err.is_connection_refusal();
        if !self.tls() && dropped {
            Some("if this server only speaks TLS, as Upstash does, write rediss://")
        } else if self.tls() && err.is_timeout() {
            Some("if this port does not speak TLS, write redis://")
        } else {
            None
        }
    }
}

/// Schemes the client reads (`valkey`, `unix` sockets: the crate's own aliases).
const KNOWN_SCHEMES: [&str; 7] = [
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "unix",
    "redis+unix",
    "valkey+unix",
];

fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then(|| scheme.to_ascii_lowercase())
}

/// `url` without its credentials, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() + 3 => {
            format!("{scheme}://***{}", &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The PEM text of `path`, if it holds at least one certificate usable as a root.
fn read_ca(path: &Path) -> Result<Vec<u8>, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(path).map_err(|e| StartError::CaUnreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| StartError::CaNotPem {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate found".into()));
    }
    Ok(pem)
}

/// The rustls error behind a failed connection, if TLS is what failed.
fn tls_error(err: &RedisError) -> Option<&rustls::Error> {
    // The crate keeps the io::Error in an Arc; rustls's error is inside that.
    let source = err.source()?;
    let io = source
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
        .and_then(|e| (**e).downcast_ref::<std::io::Error>())
        .or_else(|| source.downcast_ref::<std::io::Error>())?;
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn opts(urls: &[&str], ca_file: Option<&str>) -> RedisOptions {
        RedisOptions {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            cluster: urls.len() > 1,
            prefix: "p".into(),
            lease: Duration::from_secs(6),
            reap: Duration::from_secs(2),
            heartbeat: Duration::from_secs(5),
            ca_file: ca_file.map(PathBuf::from),
        }
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        assert_eq!(opts(&["redis://h:1"], None).check(), Ok(()));
        assert_eq!(opts(&["rediss://default:pw@h:1/0"], None).check(), Ok(()));
        assert_eq!(
            opts(&["http://h:1"], None).check(),
            Err(StartError::UnknownScheme {
                scheme: "http://".into()
            })
        );
        let bad = opts(&["h:6379"], None).check().unwrap_err();
        assert_eq!(
            bad,
            StartError::BadUrl {
                url: "h:6379".into()
            }
        );
        // Never the password, even in an error.
        let bad = opts(&["redis://u:secret@[::1"], None).check().unwrap_err();
        assert!(!bad.to_string().contains("secret"), "{bad}");
        assert!(bad.to_string().starts_with("REDIS_URL: "), "{bad}");
        assert_eq!(
            opts(&["redis://h:1"], Some("/x.pem")).check(),
            Err(StartError::CaWithoutTls)
        );
        let missing = opts(&["rediss://h:1"], Some("/no/such/ca.pem")).check();
        assert!(
            matches!(missing, Err(StartError::CaUnreadable { .. })),
            "{missing:?}"
        );
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("herenow-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let o = opts(&["rediss://h:1"], path.to_str());
        let err = o.check().unwrap_err();
        assert!(matches!(err, StartError::CaNotPem { .. }), "{err:?}");
        assert!(err.to_string().starts_with("REDIS_CA_FILE: "), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_that_cannot_heal_are_told_apart() {
        let o = opts(&["rediss://h:1"], None);
        let server = |code: &str, detail: &str| match redis::parse_redis_value(
            format!("-{code} {detail}\r\n").as_bytes(),
        ) {
            Ok(redis::Value::ServerError(e)) => RedisError::from(e),
            other => panic!("not an error reply: {other:?}"),
        };
        assert_eq!(
            o.fatal(&server("WRONGPASS", "invalid username-password pair")),
            Some(StartError::WrongPassword)
        );
        assert_eq!(
            o.fatal(&server("NOAUTH", "HELLO must be called ...")),
            Some(StartError::NoPassword)
        );
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(o.fatal(&refused), None, "Redis may come up");
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(o.fatal(&timeout), None);
        let untrusted = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let err = o.fatal(&untrusted).unwrap();
        assert!(
            matches!(&err, StartError::CertificateRejected { reason, .. } if reason == "UnknownIssuer"),
            "{err:?}"
        );
        assert!(err.to_string().contains("set REDIS_CA_FILE"), "{err}");
        assert_eq!(
            err.to_string(),
            "REDIS_URL: the TLS certificate of h:1 was rejected (UnknownIssuer); if it comes \
             from a private CA, set REDIS_CA_FILE to that CA's certificate (PEM)"
        );
        // As the cluster client reports them.
        let flat = RedisError::from((
            ErrorKind::Io,
            "Failed to create initial connections",
            "\"WRONGPASS\": invalid username-password pair".to_string(),
        ));
        assert_eq!(o.fatal(&flat), Some(StartError::WrongPassword));
    }
}
