//! Identity: signed tokens (JWT) and what they let a socket do.
//!
//! A token is checked when a socket says `hello` (from the hello's `token`, or `?token=`
//! on the upgrade URL), again on every `auth` refresh, and its expiry ends the socket.
//! HS256 tokens are checked against `AUTH_SECRET`; RS256, ES256 and EdDSA ones against the
//! keys of `AUTH_JWKS_URL` ([`jwks`]). A token's `alg` must be the one its key is for, and
//! `alg: none` is never accepted (the JWT library has no such algorithm).
//!
//! - [`claims`]: the claims, room patterns and the presence id derived from `sub`.
//! - [`jwks`]: the cached key set of a JWKS endpoint.
//!
//! Everything here is pure logic over strings and keys; the session decides when to call
//! it and how to close.

pub mod claims;
pub mod jwks;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;

pub use claims::{presence_id, Claims, Identity, Role, RoomPattern, VERIFIED_PREFIX};
pub use jwks::Jwks;

use crate::protocol::close::ServerClose;
use crate::protocol::{ErrorCode, Rejection, RoomId};

/// Largest token accepted, in bytes: real ones are under 2 KiB; the cap bounds the work a
/// hostile one can cause before any signature check.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Shortest `AUTH_SECRET`: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_BYTES: usize = 32;

/// Who may join (`AUTH`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// No tokens: every client is anonymous and its display hints are shown as sent; a
    /// hello with a token is refused, so nobody believes it was checked.
    #[default]
    Off,
    /// Verified and anonymous users side by side; anonymous ones are marked
    /// `verified: false`. A token that is sent must be valid.
    Optional,
    /// A valid token or no entry: `invalid_token` and close 4401.
    Required,
}

/// The auth part of the configuration.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub secret: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Bad signature, wrong issuer or audience, malformed, or missing when required.
    #[error("{0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("this token does not allow room {0}")]
    Forbidden(RoomId),
    /// A token sent to a server with `AUTH=off`: refused so nobody believes it was
    /// checked, but not fatal (the hello may be sent again without it), as before tokens.
    #[error("this server does not verify identity tokens (AUTH=off); send hello without a token")]
    NotChecked,
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Invalid(_) | AuthError::NotChecked => ErrorCode::InvalidToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Forbidden(_) => ErrorCode::Forbidden,
        }
    }

    /// How the socket closes after the error (4401 or 4403; clients retry neither), or
    /// `None` when it stays open.
    pub fn close(&self) -> Option<ServerClose> {
        match self {
            AuthError::Invalid(_) | AuthError::Expired => Some(ServerClose::Unauthorized),
            AuthError::Forbidden(_) => Some(ServerClose::Forbidden),
            AuthError::NotChecked => None,
        }
    }

    /// The close code that follows the error, if any.
    pub fn close_code(&self) -> Option<u16> {
        self.close().map(ServerClose::code)
    }

    pub fn rejection(&self) -> Rejection {
        Rejection::new(self.code(), self.to_string())
    }
}

/// How a socket's hello was admitted.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    Verified(Identity),
    Anonymous,
}

/// Checks tokens against the configured keys and rules.
pub struct Authenticator {
    settings: AuthSettings,
    hmac: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
}

impl Authenticator {
    /// Build from settings; with a JWKS URL, starts fetching its keys (needs a runtime).
    pub fn new(settings: AuthSettings) -> Authenticator {
        let hmac = settings
            .secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| DecodingKey::from_secret(s.as_bytes()).expect("a non-empty secret"));
        let jwks = settings.jwks_url.clone().map(|url| {
            let jwks = Jwks::new(url, settings.jwks_refresh);
            jwks.spawn_refresher();
            jwks
        });
        Authenticator {
            settings,
            hmac,
            jwks,
        }
    }

    /// No tokens at all (`AUTH=off`).
    pub fn off() -> Authenticator {
        Authenticator {
            settings: AuthSettings::default(),
            hmac: None,
            jwks: None,
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.settings.mode
    }

    /// Admit a socket's hello into `room` with the token it brought, if any.
    pub async fn admit(&self, token: Option<&str>, room: &RoomId) -> Result<Admission, AuthError> {
        let token = token.filter(|t| !t.is_empty());
        match (self.settings.mode, token) {
            (AuthMode::Off, None) | (AuthMode::Optional, None) => Ok(Admission::Anonymous),
            (AuthMode::Off, Some(_)) => Err(AuthError::NotChecked),
            (AuthMode::Required, None) => Err(AuthError::Invalid(
                "this server requires a token: send it in hello's token field or ?token= on the URL"
                    .into(),
            )),
            (_, Some(token)) => {
                let identity = self.verify(token).await?;
                self.check_room(&identity, room)?;
                Ok(Admission::Verified(identity))
            }
        }
    }

    /// Does `identity` allow `room`?
    pub fn check_room(&self, identity: &Identity, room: &RoomId) -> Result<(), AuthError> {
        if identity.allows(room) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(room.clone()))
        }
    }

    /// Verify a token's signature and claims.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let invalid = |m: &str| AuthError::Invalid(m.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token is longer than 4096 bytes"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("token is malformed, or its alg is not a signing algorithm"))?;
        let keys: Vec<(Algorithm, DecodingKey)> = match header.alg {
            Algorithm::HS256 => match &self.hmac {
                Some(key) => vec![(Algorithm::HS256, key.clone())],
                None => {
                    return Err(invalid(
                        "HS256 tokens are not accepted here (no AUTH_SECRET)",
                    ))
                }
            },
            alg if jwks::JWKS_ALGORITHMS.contains(&alg) => match &self.jwks {
                Some(jwks) => jwks
                    .candidates(header.kid.as_deref(), alg)
                    .await
                    .into_iter()
                    .map(|k| (k.alg, k.key))
                    .collect(),
                None => {
                    return Err(invalid(
                        "public-key tokens are not accepted here (no AUTH_JWKS_URL)",
                    ))
                }
            },
            _ => return Err(invalid("token algorithm is not accepted")),
        };
        if keys.is_empty() {
            return Err(invalid("no key for this token's kid and alg"));
        }
        let mut last = invalid("bad signature");
        for (alg, key) in keys {
            match jsonwebtoken::decode::<Claims>(token, &key, &self.validation(alg)) {
                Ok(data) => return Identity::from_claims(data.claims).map_err(AuthError::Invalid),
                Err(err) => {
                    last = match err.kind() {
                        ErrorKind::InvalidSignature => continue,
                        ErrorKind::ExpiredSignature => AuthError::Expired,
                        ErrorKind::ImmatureSignature => invalid("token is not valid yet (nbf)"),
                        ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                        ErrorKind::InvalidAudience => invalid("wrong audience"),
                        ErrorKind::MissingRequiredClaim(c) => {
                            AuthError::Invalid(format!("token has no {c} claim"))
                        }
                        ErrorKind::Json(e) => AuthError::Invalid(format!("token claims: {e}")),
                        _ => invalid("token is malformed"),
                    };
                    break;
                }
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.settings.leeway_secs;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.settings.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.settings.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// How long from now until `identity`'s token has expired (leeway included): when the
    /// socket must have refreshed it.
    pub fn time_left(&self, identity: &Identity) -> Duration {
        let deadline = UNIX_EPOCH + Duration::from_secs(identity.exp + self.settings.leeway_secs);
        deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

/// Sign an HS256 token (`herenow token`, the development token route, tests).
pub fn mint_hs256(
    secret: &str,
    claims: &Claims,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    #[derive(Serialize)]
    struct Minted<'a> {
        #[serde(flatten)]
        claims: &'a Claims,
        iat: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aud: Option<&'a str>,
    }
    let minted = Minted {
        claims,
        iat: now_secs(),
        iss: issuer,
        aud: audience,
    };
    let key = EncodingKey::from_secret(secret.as_bytes())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &minted, &key)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn auth(mode: AuthMode) -> Authenticator {
        Authenticator::new(AuthSettings {
            mode,
            secret: Some(SECRET.into()),
            leeway_secs: 30,
            jwks_refresh: Duration::from_secs(60),
            ..AuthSettings::default()
        })
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            name: Some("Ada".into()),
            avatar: None,
            color: None,
            rooms: Some(vec!["design-*".into()]),
            role: None,
        }
    }

    fn token(c: &Claims) -> String {
        mint_hs256(SECRET, c, None, None).unwrap()
    }

    fn room(r: &str) -> RoomId {
        RoomId::parse_or_lobby(r)
    }

    #[tokio::test]
    async fn modes() {
        let t = token(&claims("ada", now_secs() + 60));
        let design = room("design-x");
        assert_eq!(
            auth(AuthMode::Off).admit(None, &design).await,
            Ok(Admission::Anonymous)
        );
        let err = auth(AuthMode::Off)
            .admit(Some(&t), &design)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.close_code()),
            (ErrorCode::InvalidToken, None)
        );
        assert_eq!(
            auth(AuthMode::Optional).admit(None, &design).await,
            Ok(Admission::Anonymous)
        );
        assert_eq!(
            auth(AuthMode::Optional).admit(Some(""), &design).await,
            Ok(Admission::Anonymous)
        );
        let err = auth(AuthMode::Required)
            .admit(None, &design)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.close_code()),
            (ErrorCode::InvalidToken, Some(4401))
        );
        for mode in [AuthMode::Optional, AuthMode::Required] {
            match auth(mode).admit(Some(&t), &design).await.unwrap() {
                Admission::Verified(i) => {
                    assert_eq!(i.id, presence_id("ada"));
                    assert_eq!(i.user.name.as_deref(), Some("Ada"));
                }
                other => panic!("{other:?}"),
            }
            let err = auth(mode)
                .admit(Some(&t), &room("lobby"))
                .await
                .unwrap_err();
            assert_eq!(
                (err.code(), err.close_code()),
                (ErrorCode::Forbidden, Some(4403))
            );
            // A bad token is refused in optional mode too, never downgraded to anonymous.
            let err = auth(mode).admit(Some("x.y.z"), &design).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidToken);
        }
    }

    #[tokio::test]
    async fn expiry_has_leeway() {
        let a = auth(AuthMode::Required);
        // 10 s past exp: inside the 30 s leeway.
        assert!(a
            .verify(&token(&claims("ada", now_secs() - 10)))
            .await
            .is_ok());
        let err = a
            .verify(&token(&claims("ada", now_secs() - 40)))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.close_code()),
            (ErrorCode::TokenExpired, Some(4401))
        );
        let i = a
            .verify(&token(&claims("ada", now_secs() + 100)))
            .await
            .unwrap();
        let left = a.time_left(&i).as_secs();
        assert!((125..=130).contains(&left), "{left}");
    }

    #[tokio::test]
    async fn forged_and_malformed_tokens_are_invalid() {
        let a = auth(AuthMode::Required);
        let good = claims("ada", now_secs() + 60);
        let other = mint_hs256("another secret, also 32 bytes long!", &good, None, None).unwrap();
        let code = |r: Result<Identity, AuthError>| r.unwrap_err();
        assert_eq!(
            code(a.verify(&other).await),
            AuthError::Invalid("bad signature".into())
        );
        // An expired token with a bad signature is invalid, not expired.
        let forged_old = mint_hs256(
            "another secret, also 32 bytes long!",
            &claims("ada", 1),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            code(a.verify(&forged_old).await).code(),
            ErrorCode::InvalidToken
        );
        // alg: none, with or without a signature.
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let body = b64(&serde_json::to_string(&good).unwrap());
        for none in [
            format!("{}.{body}.", b64(r#"{"alg":"none","typ":"JWT"}"#)),
            format!("{}.{body}.", b64(r#"{"alg":"None"}"#)),
            format!("{}.{body}.c2ln", b64(r#"{"alg":"none"}"#)),
        ] {
            assert_eq!(
                code(a.verify(&none).await).code(),
                ErrorCode::InvalidToken,
                "{none}"
            );
        }
        // Another algorithm than the key's: HS384 with the same secret.
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &good,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(code(a.verify(&hs384).await).code(), ErrorCode::InvalidToken);
        // RS256 named, no JWKS configured.
        let rs = format!("{}.{body}.c2ln", b64(r#"{"alg":"RS256","kid":"k"}"#));
        assert_eq!(code(a.verify(&rs).await).code(), ErrorCode::InvalidToken);
        for junk in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "....",
            &"x".repeat(5000),
            "eyJ.eyJ.sig",
        ] {
            assert_eq!(
                code(a.verify(junk).await).code(),
                ErrorCode::InvalidToken,
                "{junk:.20}"
            );
        }
        // Missing sub or exp.
        let no_sub = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": now_secs() + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            code(a.verify(&no_sub).await).code(),
            ErrorCode::InvalidToken
        );
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "ada"}),
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            code(a.verify(&no_exp).await).code(),
            ErrorCode::InvalidToken
        );
    }

    #[tokio::test]
    async fn issuer_and_audience() {
        let a = Authenticator::new(AuthSettings {
            mode: AuthMode::Required,
            secret: Some(SECRET.into()),
            issuer: Some("https://id.example".into()),
            audience: Some("herenow".into()),
            leeway_secs: 30,
            ..AuthSettings::default()
        });
        let c = claims("ada", now_secs() + 60);
        let ok = mint_hs256(SECRET, &c, Some("https://id.example"), Some("herenow")).unwrap();
        assert!(a.verify(&ok).await.is_ok());
        for (iss, aud, why) in [
            (
                Some("https://evil.example"),
                Some("herenow"),
                "wrong issuer",
            ),
            (Some("https://id.example"), Some("other"), "wrong audience"),
            (None, Some("herenow"), "token has no iss claim"),
            (Some("https://id.example"), None, "token has no aud claim"),
        ] {
            let t = mint_hs256(SECRET, &c, iss, aud).unwrap();
            assert_eq!(
                a.verify(&t).await.unwrap_err(),
                AuthError::Invalid(why.into())
            );
        }
        // Without AUTH_AUDIENCE, a token's aud (even a list) does not matter.
        let lax = auth(AuthMode::Required);
        let listed = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "ada", "exp": now_secs() + 60, "aud": ["a", "b"]}),
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(lax.verify(&listed).await.is_ok());
    }
}
