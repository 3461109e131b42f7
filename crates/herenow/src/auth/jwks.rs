//! Public keys from a JWKS endpoint (`AUTH_JWKS_URL`), cached.
//!
//! The set is fetched at start and every [`JWKS_MAX_AGE`]; a token naming a `kid` the
//! cache does not hold triggers a refetch, at most once per `AUTH_JWKS_REFRESH_MS` however
//! many such tokens arrive (a flood of made-up `kid`s costs the identity provider one
//! request per interval). A failed fetch, or a set with no usable key, keeps the last good
//! keys serving: an identity provider's outage must not log everyone out.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

/// Keys are re-read this often even when every `kid` is known, so a key the identity
/// provider withdrew stops being accepted within this time.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// One fetch may take this long before it counts as failed.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read; real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Algorithms accepted from a JWKS (an HMAC key has no place in a public key set).
pub const JWKS_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS request failed: {0}")]
    Http(String),
    #[error("JWKS document is not a key set: {0}")]
    Parse(String),
    #[error("JWKS document has no usable signing key")]
    NoKeys,
}

/// One verification key: the algorithm it is for, and its `kid` when it has one.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.kid, self.alg)
    }
}

/// The algorithm a JWK is for: its `alg` when it names a supported one, else the usual
/// one for its key type. `None` for keys we cannot or must not use.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(ka) => Algorithm::try_from(ka).ok()?,
        None => implied,
    };
    // The key type must fit the algorithm it claims (an RSA key labelled ES256 is junk).
    let family_fits = jsonwebtoken::Algorithm::family(alg) == implied.family()
        && (alg.family() != jsonwebtoken::AlgorithmFamily::Ec || alg == implied);
    (JWKS_ALGORITHMS.contains(&alg) && family_fits).then_some(alg)
}

/// The usable keys of a JWKS document. Keys of unknown or unsupported types are skipped
/// (a provider may publish encryption keys beside signing keys); a set with none left is
/// an error, so that it never replaces good keys.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| JwksError::Parse(e.to_string()))?;
    let keys: Vec<Key> = set
        .keys
        .into_iter()
        .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
        .filter_map(|jwk| {
            let alg = key_algorithm(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

/// The cached key set of one JWKS URL.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    /// At most one on-demand refetch per this interval (`AUTH_JWKS_REFRESH_MS`).
    min_refetch: Duration,
    keys: RwLock<Arc<Vec<Key>>>,
    /// When the last fetch started; held across the fetch so concurrent misses wait for
    /// it and then look again instead of fetching too.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(url: String, min_refetch: Duration) -> Arc<Jwks> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .expect("a TLS client with the bundled roots builds");
        Arc::new(Jwks {
            url,
            client,
            min_refetch,
            keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// Fetch at once, then every [`JWKS_MAX_AGE`] (every `min_refetch` while no fetch has
    /// succeeded yet), until the last handle to the cache is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<Jwks> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                let wait = match jwks.fetch_now().await {
                    Ok(_) => JWKS_MAX_AGE,
                    Err(_) if jwks.current().is_empty() => jwks.min_refetch,
                    Err(_) => JWKS_MAX_AGE.min(jwks.min_refetch * 10),
                };
                drop(jwks);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// The keys held now.
    pub fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keys that may have signed a token with this header: the one with its `kid`, or
    /// every key for its algorithm when it names none. On a miss, refetch (rate-limited)
    /// and look again.
    pub async fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
        let found = select(&self.current(), kid, alg);
        if !found.is_empty() {
            return found;
        }
        let seen = self.current();
        let mut last = self.last_fetch.lock().await;
        // Someone else refreshed while we waited for the lock: look there first.
        if !Arc::ptr_eq(&seen, &self.current()) {
            return select(&self.current(), kid, alg);
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return Vec::new();
        }
        *last = Some(Instant::now());
        if let Err(err) = self.fetch_locked().await {
            tracing::warn!(url = %self.url, %err, "JWKS refetch for an unknown key failed; keeping the last good keys");
        }
        select(&self.current(), kid, alg)
    }

    /// Fetch now (start-up and the periodic refresh), recording the attempt.
    pub async fn fetch_now(&self) -> Result<usize, JwksError> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        let result = self.fetch_locked().await;
        if let Err(err) = &result {
            tracing::warn!(url = %self.url, %err, "JWKS fetch failed; keeping the last good keys");
        }
        result
    }

    async fn fetch_locked(&self) -> Result<usize, JwksError> {
        let keys = parse_jwks(&self.download().await?)?;
        let n = keys.len();
        tracing::debug!(url = %self.url, keys = n, "JWKS fetched");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    async fn download(&self) -> Result<Vec<u8>, JwksError> {
        let http = |e: reqwest::Error| JwksError::Http(e.without_url().to_string());
        let mut res = self.client.get(&self.url).send().await.map_err(http)?;
        if !res.status().is_success() {
            return Err(JwksError::Http(format!("status {}", res.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::Http(format!(
                    "document larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Most keys tried for a token without `kid`: each is a signature check.
const MAX_CANDIDATES: usize = 8;

fn select(keys: &[Key], kid: Option<&str>, alg: Algorithm) -> Vec<Key> {
    keys.iter()
        .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
        .take(MAX_CANDIDATES)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 public key and an Ed25519 one, as JWKs (test keys only).
    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"ec1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    const ED: &str = r#"{"kty":"OKP","crv":"Ed25519","kid":"ed1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

    #[test]
    fn usable_keys_are_kept_and_others_skipped() {
        let doc = format!(
            r#"{{"keys":[{EC},{ED},
            {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
            {{"kty":"EC","crv":"P-256","use":"enc","kid":"enc","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty":"EC","crv":"P-256","alg":"RS256","kid":"mislabelled","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty":"future","kid":"x"}}, 42]}}"#
        );
        let keys = parse_jwks(doc.as_bytes()).unwrap();
        let got: Vec<_> = keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            got,
            [
                (Some("ec1"), Algorithm::ES256),
                (Some("ed1"), Algorithm::EdDSA)
            ]
        );
        assert_eq!(select(&keys, Some("ec1"), Algorithm::ES256).len(), 1);
        assert!(select(&keys, Some("ec1"), Algorithm::EdDSA).is_empty());
        assert_eq!(select(&keys, None, Algorithm::EdDSA).len(), 1);
        assert!(select(&keys, Some("nope"), Algorithm::ES256).is_empty());
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        assert!(matches!(
            parse_jwks(br#"{"keys":[]}"#),
            Err(JwksError::NoKeys)
        ));
        assert!(matches!(
            parse_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            Err(JwksError::NoKeys)
        ));
        assert!(matches!(parse_jwks(b"<html>"), Err(JwksError::Parse(_))));
        assert!(matches!(
            parse_jwks(br#"{"nokeys":1}"#),
            Err(JwksError::Parse(_))
        ));
    }
}
