//! What a verified token says: the claims, the room patterns, the presence id derived from
//! `sub`. Pure functions, tested without keys or sockets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::protocol::Role;
use crate::protocol::{Id, RoomId, UserHints, MAX_ROOM_ID_LEN};

/// The prefix of every verified presence id; anonymous tab ids may not start with it.
pub const VERIFIED_PREFIX: &str = "u_";
/// Longest `sub` accepted: identity providers use short ids or emails; anything longer is
/// more likely an attack on memory than a user.
pub const MAX_SUB_BYTES: usize = 256;
/// Most room patterns one token may carry.
pub const MAX_ROOM_PATTERNS: usize = 100;

/// The claims herenow reads; others (`iat`, custom ones) are ignored; `iss`, `aud` and
/// `nbf` are checked by the verifier (the first two when configured).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Expiry, seconds since the Unix epoch (required; a fraction is cut off).
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// Room-id patterns (`*` matches any run of characters); absent = every room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// A JWT NumericDate: seconds, which RFC 7519 allows to carry a fraction.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let secs = f64::deserialize(d)?;
    if secs.is_finite() && secs >= 0.0 {
        Ok(secs as u64)
    } else {
        Err(serde::de::Error::custom(
            "exp must be a non-negative number",
        ))
    }
}

/// A verified user: who they are to everyone else, and what they may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// [`presence_id`] of `sub`: what other clients see.
    pub id: Id,
    /// The raw `sub`, for this server's logs of refusals only: never sent to clients.
    pub sub: String,
    /// Verified display claims; they replace any hints the client sends.
    pub user: UserHints,
    pub role: Role,
    /// `None` = every room.
    pub rooms: Option<Vec<RoomPattern>>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl Identity {
    /// Check the claims a signature vouched for: a usable `sub`, valid display claims and
    /// room patterns. A malformed claim makes the whole token invalid (the issuer has a bug
    /// worth hearing about), rather than silently dropping it.
    pub fn from_claims(claims: Claims) -> Result<Identity, String> {
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_BYTES {
            return Err(format!("sub must be 1-{MAX_SUB_BYTES} bytes"));
        }
        let user = UserHints {
            name: claims.name,
            avatar: claims.avatar,
            color: claims.color,
        }
        .validate()
        .map_err(|r| format!("display claim: {}", r.message))?;
        let rooms = match claims.rooms {
            None => None,
            Some(list) if list.len() > MAX_ROOM_PATTERNS => {
                return Err(format!(
                    "rooms may list at most {MAX_ROOM_PATTERNS} patterns"
                ))
            }
            Some(list) => Some(
                list.iter()
                    .map(|p| RoomPattern::parse(p))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Identity {
            id: presence_id(&claims.sub),
            sub: claims.sub,
            user,
            role: claims.role.unwrap_or_default(),
            rooms,
            exp: claims.exp,
        })
    }

    /// May this user enter `room`?
    pub fn allows(&self, room: &RoomId) -> bool {
        match &self.rooms {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(room.as_str())),
        }
    }
}

/// The presence id of a verified user: `u_` + base64url (no padding) of the first 16 bytes
/// of SHA-256 of the UTF-8 `sub`. 24 characters of `[A-Za-z0-9_-]`: a valid id everywhere
/// ids go (store members use `|` as a separator, which a raw `sub` often contains), stable
/// across devices and servers, and it does not reveal the `sub` (often an email).
pub fn presence_id(sub: &str) -> Id {
    let digest = Sha256::digest(sub.as_bytes());
    let mut id = String::with_capacity(24);
    id.push_str(VERIFIED_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&digest[..16], &mut id);
    id.into()
}

/// A room-id pattern from a token's `rooms` claim: room-id characters and `*`, which
/// matches any run of characters (none included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPattern(String);

impl RoomPattern {
    pub fn parse(raw: &str) -> Result<RoomPattern, String> {
        let ok = (1..=MAX_ROOM_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*');
        if ok {
            Ok(RoomPattern(raw.to_owned()))
        } else {
            Err(format!(
                "room pattern {raw:?} must be 1-{MAX_ROOM_ID_LEN} characters of a-z, 0-9, - and *"
            ))
        }
    }

    /// Glob match with `*` only, in linear time: on a mismatch, the last `*` takes one
    /// more character (no exponential backtracking, whatever the pattern).
    pub fn matches(&self, room: &str) -> bool {
        let (p, s) = (self.0.as_bytes(), room.as_bytes());
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && p[pi] == s[si] {
                pi += 1;
                si += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::is_valid_id;

    #[test]
    fn presence_ids_are_24_valid_characters_and_hide_the_sub() {
        let id = presence_id("ada@example.com");
        assert_eq!(id.len(), 24);
        assert!(id.starts_with(VERIFIED_PREFIX));
        assert!(is_valid_id(&id));
        assert!(!id.contains("ada"));
        assert_eq!(presence_id("ada@example.com"), id, "stable");
        assert_ne!(presence_id("ada@example.org"), id);
        // A `provider|id` sub (which would break store member names) gives a valid id too.
        assert!(is_valid_id(&presence_id("auth0|5f7c8ec7c33c6c004bbafe82")));
        // The derivation itself, against a value computed independently (Python's
        // hashlib and base64.urlsafe_b64encode, padding stripped).
        assert_eq!(&*presence_id("ada"), "u__e5DDUC9V97qwYbNl5ADPQ");
    }

    #[test]
    fn room_patterns() {
        let m = |p: &str, r: &str| RoomPattern::parse(p).unwrap().matches(r);
        assert!(m("lobby", "lobby"));
        assert!(!m("lobby", "lobby-2"));
        assert!(m("design-*", "design-review"));
        assert!(m("design-*", "design-"));
        assert!(!m("design-*", "design"));
        assert!(!m("design-*", "redesign-x"));
        assert!(m("*", "anything"));
        assert!(m("*-review", "design-review"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("**", "x"));
        // Linear even on a pattern built to make naive backtracking explode.
        let room = "a".repeat(64);
        assert!(!m(&format!("{}b", "a*".repeat(31)), &room));
        for bad in ["", "Design-*", "a b", "x/y", &"a".repeat(65), "é"] {
            assert!(RoomPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn claims(json: serde_json::Value) -> Result<Identity, String> {
        Identity::from_claims(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn identity_from_claims() {
        let i = claims(serde_json::json!({
            "sub": "ada", "exp": 10, "name": "Ada", "color": "#aa3300",
            "rooms": ["design-*", "lobby"], "role": "viewer"
        }))
        .unwrap();
        assert_eq!(i.id, presence_id("ada"));
        assert_eq!(i.user.name.as_deref(), Some("Ada"));
        assert_eq!(i.role, Role::Viewer);
        assert!(i.allows(&RoomId::parse_or_lobby("design-review")));
        assert!(i.allows(&RoomId::parse_or_lobby("lobby")));
        assert!(!i.allows(&RoomId::parse_or_lobby("launch-plan")));

        let open = claims(serde_json::json!({"sub": "x", "exp": 1})).unwrap();
        assert_eq!(open.role, Role::Member);
        assert!(open.allows(&RoomId::parse_or_lobby("anything")));
        let none = claims(serde_json::json!({"sub": "x", "exp": 1, "rooms": []})).unwrap();
        assert!(!none.allows(&RoomId::parse_or_lobby("lobby")));

        for bad in [
            serde_json::json!({"sub": "", "exp": 1}),
            serde_json::json!({"sub": "x".repeat(257), "exp": 1}),
            serde_json::json!({"sub": "x", "exp": 1, "color": "red"}),
            serde_json::json!({"sub": "x", "exp": 1, "avatar": "javascript:alert(1)"}),
            serde_json::json!({"sub": "x", "exp": 1, "rooms": ["Bad Room"]}),
            serde_json::json!({"sub": "x", "exp": 1, "rooms": vec!["a"; 101]}),
        ] {
            assert!(claims(bad.clone()).is_err(), "{bad}");
        }
        let unknown_role: Result<Claims, _> =
            serde_json::from_value(serde_json::json!({"sub": "x", "exp": 1, "role": "admin"}));
        assert!(unknown_role.is_err());
    }
}
