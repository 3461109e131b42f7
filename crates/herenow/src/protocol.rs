//! The wire protocol: JSON text frames on `GET /server/ws/:roomId`.
//!
//! Protocol 1 is the reference template's (`hello` with an id, `presence` with the
//! members) and must keep working unchanged; protocol 2 is opt-in (`"proto":2`) and
//! adds user objects (with each member's status and location), versioned diffs, events
//! and `pong`. Golden examples of every
//! message live in `fixtures/protocol/`, read by this crate's tests and the TypeScript
//! client's, so the two sides cannot drift.
//!
//! Validation lives here too: room ids, presence ids, display hints and size limits,
//! each failure mapped to a stable [`ErrorCode`].

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A presence id (a tab id, or a verified user id): cheap to clone, shared by every
/// roster and frame that names it.
pub type Id = Arc<str>;

/// Longest room id; longer ones fall back to [`LOBBY`].
pub const MAX_ROOM_ID_LEN: usize = 64;
/// Longest presence (tab) id.
pub const MAX_ID_LEN: usize = 128;
/// Largest `state` object, in UTF-8 bytes of its compact JSON.
pub const MAX_STATE_BYTES: usize = 1024;
/// Largest event `data`, in UTF-8 bytes of its compact JSON.
pub const MAX_EVENT_BYTES: usize = 1024;
/// Longest event name.
pub const MAX_EVENT_NAME_LEN: usize = 32;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest avatar URL, in bytes.
pub const MAX_AVATAR_LEN: usize = 512;
/// The room every invalid room id falls back to (the reference template's contract).
pub const LOBBY: &str = "lobby";
/// The reserved event name of typing indicators: `data` is `{"typing": bool}`.
pub const TYPING_EVENT: &str = "typing";
/// Longest tab location, in UTF-8 bytes of the string: room for a section id, a slide
/// number or a cell reference, not for data (that is what `state` is for).
pub const MAX_LOCATION_BYTES: usize = 128;

/// WebSocket close codes the server sends, and what a client does about each.
pub mod close {
    /// The client's own 1000 means "leave now" (no grace window).
    pub const NORMAL: u16 = 1000;
    /// Policy violation (no hello, rate limit): retry after 30 s at the earliest.
    pub const POLICY: u16 = 1008;
    /// A frame over the size limit: do not retry the same thing.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error: retry with backoff.
    pub const INTERNAL: u16 = 1011;
    /// Service restart (graceful shutdown): reconnect, ideally elsewhere.
    pub const RESTART: u16 = 1012;
    /// Try again later (room full, or the socket could not keep up).
    pub const TRY_AGAIN: u16 = 1013;
    /// The peer is gone: it sent nothing (not even a pong) for `STALE_MS`.
    pub const GOING_AWAY: u16 = 1001;
    /// Unauthorised (no valid token, or it expired): do not retry; the app is told.
    pub const UNAUTHORIZED: u16 = 4401;
    /// Forbidden room (the token does not allow it): do not retry; the app is told.
    pub const FORBIDDEN: u16 = 4403;

    /// Every reason the server closes a socket: its close code, the reason sent with it
    /// (never anything internal) and the label it is counted under in metrics. The one
    /// place that maps a cause to what the client sees.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum ServerClose {
        /// No valid hello within `HELLO_TIMEOUT_MS`.
        NoHello,
        /// Went on sending past the rate limit after being told.
        RateLimited,
        /// A frame over `MAX_FRAME_BYTES`.
        TooBig,
        /// Nothing received for `STALE_MS`.
        Stale,
        /// The room holds `MAX_ROOM_MEMBERS` already.
        RoomFull,
        /// The socket could not keep up with what the room sends (its outbox overflowed
        /// again and again).
        Slow,
        /// The server is shutting down: reconnect, ideally elsewhere.
        Restart,
        /// No valid token at hello, or it expired without a refresh.
        Unauthorized,
        /// The token does not allow this room (checked at hello and on every refresh).
        Forbidden,
    }

    impl ServerClose {
        /// Every variant, in the order metrics list them.
        pub const ALL: [ServerClose; 9] = [
            ServerClose::NoHello,
            ServerClose::RateLimited,
            ServerClose::TooBig,
            ServerClose::Stale,
            ServerClose::RoomFull,
            ServerClose::Slow,
            ServerClose::Restart,
            ServerClose::Unauthorized,
            ServerClose::Forbidden,
        ];

        pub fn code(self) -> u16 {
            match self {
                ServerClose::NoHello | ServerClose::RateLimited => POLICY,
                ServerClose::TooBig => TOO_BIG,
                ServerClose::Stale => GOING_AWAY,
                ServerClose::RoomFull | ServerClose::Slow => TRY_AGAIN,
                ServerClose::Restart => RESTART,
                ServerClose::Unauthorized => UNAUTHORIZED,
                ServerClose::Forbidden => FORBIDDEN,
            }
        }

        /// The close frame's reason, for people reading a browser's network panel.
        pub fn reason(self) -> &'static str {
            match self {
                ServerClose::NoHello => "no valid hello",
                ServerClose::RateLimited => "rate limit exceeded",
                ServerClose::TooBig => "frame too large",
                ServerClose::Stale => "stale: no frame received",
                ServerClose::RoomFull => "room is full",
                ServerClose::Slow => "too slow to keep up",
                ServerClose::Restart => "server restarting",
                ServerClose::Unauthorized => "unauthorized",
                ServerClose::Forbidden => "room not allowed",
            }
        }

        /// The `reason` label of `herenow_server_closes_total`. The first four are the
        /// labels dashboards know from before this enum (a full room was, and stays,
        /// counted as `policy`); later causes only add labels.
        pub fn label(self) -> &'static str {
            match self {
                ServerClose::NoHello | ServerClose::RateLimited | ServerClose::RoomFull => "policy",
                ServerClose::TooBig => "too_big",
                ServerClose::Slow => "slow",
                ServerClose::Stale => "stale",
                ServerClose::Restart => "restart",
                ServerClose::Unauthorized => "unauthorized",
                ServerClose::Forbidden => "forbidden",
            }
        }
    }
}

/// A validated room id: lowercase letters, digits and hyphens, 1-64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// The room named by `raw`, or the lobby when `raw` is not a valid room id.
    pub fn parse_or_lobby(raw: &str) -> RoomId {
        if Self::is_valid(raw) {
            RoomId(raw.into())
        } else {
            RoomId(LOBBY.into())
        }
    }

    pub fn is_valid(raw: &str) -> bool {
        (1..=MAX_ROOM_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&str>::deserialize(d)?;
        if RoomId::is_valid(raw) {
            Ok(RoomId(raw.into()))
        } else {
            Err(D::Error::custom("invalid room id"))
        }
    }
}

/// Is `raw` a valid tab id: 1-128 characters of `[A-Za-z0-9_-]`.
pub fn is_valid_id(raw: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A JSON value kept as its compact text: stored and forwarded many times, parsed never.
#[derive(Clone)]
pub struct RawJson(Arc<RawValue>);

impl RawJson {
    /// `{}`: the state of a member who never set one.
    pub fn empty_object() -> RawJson {
        RawJson(Arc::from(
            RawValue::from_string("{}".to_owned()).expect("valid JSON"),
        ))
    }

    /// Compact `value` into raw JSON text.
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> RawJson {
        let raw = serde_json::value::to_raw_value(value).expect("JSON values always serialize");
        RawJson(Arc::from(raw))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Size in UTF-8 bytes of the compact JSON, the unit of every size limit.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (*self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    /// Accepts any JSON and compacts it, so sizes and equality do not depend on spacing.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(RawJson::from_value(&value))
    }
}

/// Display hints a client may give about itself (only used when no verified token).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserHints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An `https://` URL of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

impl UserHints {
    /// Checks every hint; an empty string counts as absent.
    pub fn validate(mut self) -> Result<UserHints, Rejection> {
        let bad = |m: &str| Err(Rejection::new(ErrorCode::InvalidUser, m));
        self.name = self.name.filter(|n| !n.trim().is_empty());
        self.avatar = self.avatar.filter(|a| !a.is_empty());
        self.color = self.color.filter(|c| !c.is_empty());
        if let Some(name) = &self.name {
            if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
                return bad("name must be at most 64 characters, without control characters");
            }
        }
        if let Some(avatar) = &self.avatar {
            let ok = avatar.len() <= MAX_AVATAR_LEN
                && avatar.len() > "https://".len()
                && avatar.starts_with("https://")
                && avatar
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\'));
            if !ok {
                return bad("avatar must be an https:// URL of at most 512 characters");
            }
        }
        if let Some(color) = &self.color {
            let ok = color.len() == 7
                && color.starts_with('#')
                && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return bad("color must be #rrggbb");
            }
        }
        Ok(self)
    }
}

/// A person's status: `active` at the page, `idle` there without input (or with its
/// window behind another), `away` (hidden, or no input for long). Decided by each tab;
/// a member shows the best of their tabs' (see [`Status::best`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Also what a tab that never said anything is: protocol-1 and older clients.
    #[default]
    Active,
    Idle,
    Away,
}

impl Status {
    /// The fold across tabs: active if any is, else idle if any is, else away; `None`
    /// for no tab at all.
    pub fn best(statuses: impl IntoIterator<Item = Status>) -> Option<Status> {
        statuses.into_iter().min_by_key(|s| s.rank())
    }

    /// 0 for the best.
    fn rank(self) -> u8 {
        match self {
            Status::Active => 0,
            Status::Idle => 1,
            Status::Away => 2,
        }
    }
}

/// Where a tab is in the app (a section id, a slide, a cell): 1-128 bytes, app-chosen.
pub type Location = Arc<str>;

/// Check a location from a client: `None` and `""` mean none.
pub fn location(raw: Option<String>) -> Result<Option<Location>, Rejection> {
    match raw {
        None => Ok(None),
        Some(l) if l.is_empty() => Ok(None),
        Some(l) if l.len() > MAX_LOCATION_BYTES => Err(Rejection::new(
            ErrorCode::LocationTooLarge,
            format!(
                "location is {} bytes; the limit is {MAX_LOCATION_BYTES}",
                l.len()
            ),
        )),
        Some(l) => Ok(Some(l.into())),
    }
}

/// Client -> server messages.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientMsg {
    /// Join the room; only the first valid `hello` on a socket counts.
    Hello(Hello),
    /// Keep-alive; protocol 2 gets `pong`.
    Ping,
    /// Replace my presence state (and optionally my display hints).
    State(StateUpdate),
    /// Ephemeral broadcast to the others in the room; never stored.
    Event(ClientEvent),
    /// Ask for a full snapshot (after a version gap).
    Sync,
    /// This tab's status changed (protocol 2 clients send it only on a change).
    Status(StatusUpdate),
    /// This tab's location changed; `null` clears it.
    Location(LocationUpdate),
    /// Replace this socket's token with a fresh one before the old one expires.
    Auth(AuthRefresh),
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct AuthRefresh {
    pub token: String,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct Hello {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserHints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Map<String, Value>>,
    /// This tab's status at joining; absent means active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// This tab's location at joining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct StatusUpdate {
    pub status: Status,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct LocationUpdate {
    /// Required, `null` included: a message that forgot it is a mistake, not a clear.
    #[serde(deserialize_with = "Option::deserialize")]
    pub location: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct StateUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserHints>,
}

#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct ClientEvent {
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

/// The protocol version a socket speaks, fixed by its `hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// The reference template's: full `presence` rosters on member-set changes only.
    V1,
    /// Snapshots, versioned diffs, user objects, events and pongs.
    V2,
}

impl Proto {
    /// `proto` absent means 1; anything but 1 or 2 is rejected.
    pub fn parse(raw: Option<&Value>) -> Result<Proto, Rejection> {
        match raw.map(Value::as_u64) {
            None => Ok(Proto::V1),
            Some(Some(1)) => Ok(Proto::V1),
            Some(Some(2)) => Ok(Proto::V2),
            Some(_) => Err(Rejection::new(
                ErrorCode::InvalidProto,
                "proto must be 1 or 2",
            )),
        }
    }
}

/// How a socket takes part in its room (a token's `role` claim: `member` or `viewer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Shown in the room, counted toward `MAX_ROOM_MEMBERS`.
    #[default]
    Member,
    /// Receives the room but is never shown in it and does not count toward its size.
    Viewer,
}

/// A `hello` that passed validation.
#[derive(Debug)]
pub struct Join {
    /// The presence id: who others see (the tab id of an anonymous user).
    pub id: Id,
    /// The hello's own id, the tab's key: a socket that comes back with it inside the
    /// grace window takes the old socket's place.
    pub tab: Id,
    pub proto: Proto,
    pub role: Role,
    pub user: UserHints,
    pub state: RawJson,
    /// Whether a token vouches for this user; `None` with `AUTH=off`.
    pub verified: Option<bool>,
    /// The tab's status and location as its hello said.
    pub status: Status,
    pub location: Option<Location>,
}

impl Hello {
    /// Validates every field but the token (the session checks it against the auth
    /// settings); a rejected hello does not count as the socket's first.
    pub fn validate(self) -> Result<Join, Rejection> {
        if !is_valid_id(&self.id) {
            return Err(Rejection::new(
                ErrorCode::InvalidId,
                "id must be 1-128 characters of A-Z, a-z, 0-9, _ or -",
            ));
        }
        let proto = Proto::parse(self.proto.as_ref())?;
        let user = self.user.unwrap_or_default().validate()?;
        let state = match self.state {
            Some(map) => state_json(&map)?,
            None => RawJson::empty_object(),
        };
        let location = location(self.location)?;
        let id: Id = self.id.into();
        Ok(Join {
            tab: id.clone(),
            id,
            proto,
            role: Role::Member,
            user,
            state,
            verified: None,
            status: self.status.unwrap_or_default(),
            location,
        })
    }
}

/// Compact `state` and check its size.
pub fn state_json(map: &Map<String, Value>) -> Result<RawJson, Rejection> {
    let json = RawJson::from_value(map);
    if json.len() > MAX_STATE_BYTES {
        return Err(Rejection::new(
            ErrorCode::StateTooLarge,
            format!(
                "state is {} bytes; the limit is {MAX_STATE_BYTES}",
                json.len()
            ),
        ));
    }
    Ok(json)
}

/// An event that passed validation, ready to fan out.
#[derive(Clone, Debug, PartialEq)]
pub struct OutEvent {
    pub event: Arc<str>,
    pub data: RawJson,
    /// For `typing` events: the flag, so the sender's session can expire it.
    pub typing: Option<bool>,
}

impl ClientEvent {
    pub fn validate(self) -> Result<OutEvent, Rejection> {
        if self.event.is_empty()
            || self.event.chars().count() > MAX_EVENT_NAME_LEN
            || self.event.chars().any(char::is_control)
        {
            return Err(Rejection::new(
                ErrorCode::BadMessage,
                "event must be a name of 1-32 characters",
            ));
        }
        let data = RawJson::from_value(&self.data);
        if data.len() > MAX_EVENT_BYTES {
            return Err(Rejection::new(
                ErrorCode::EventTooLarge,
                format!(
                    "event data is {} bytes; the limit is {MAX_EVENT_BYTES}",
                    data.len()
                ),
            ));
        }
        let typing = if self.event == TYPING_EVENT {
            match self.data.get("typing").and_then(Value::as_bool) {
                Some(flag) if self.data.as_object().is_some_and(|o| o.len() == 1) => Some(flag),
                _ => {
                    return Err(Rejection::new(
                        ErrorCode::BadMessage,
                        "typing data must be {\"typing\": true|false}",
                    ))
                }
            }
        } else {
            None
        };
        Ok(OutEvent {
            event: self.event.into(),
            data,
            typing,
        })
    }
}

/// Server -> client messages.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg {
    /// Full roster. Protocol 1: to every socket of the room when the member set changes,
    /// and to one socket after its hello. Protocol 2 (with `users` and `self`): to one
    /// socket, after its hello and on `sync`.
    Presence(Presence),
    /// Protocol 2, broadcast: the net effect of the changes from `prev` to `version`.
    Diff(Diff),
    /// Protocol 2, broadcast to every socket of the room but the sender's.
    Event(RoomEvent),
    /// Protocol 2, to one socket: answer to `ping`.
    Pong,
    /// To one socket: its own bad input.
    Error(ErrorMsg),
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub room_id: RoomId,
    pub count: usize,
    pub members: Vec<Id>,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<Arc<User>>>,
    /// Kept last: snapshots are serialised once without it and the suffix appended per
    /// receiver (see `room::SnapshotFrame`).
    #[serde(default, rename = "self", skip_serializing_if = "Option::is_none")]
    pub self_id: Option<Id>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub room_id: RoomId,
    pub prev: u64,
    pub version: u64,
    pub joined: Vec<Arc<User>>,
    pub left: Vec<Id>,
    pub updated: Vec<Arc<User>>,
}

/// One member as clients see it: the union of its tabs on every instance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Id,
    #[serde(flatten)]
    pub hints: UserHints,
    pub state: RawJson,
    pub tabs: u32,
    /// When the member arrived, ms since the Unix epoch.
    pub since: u64,
    /// With `AUTH=optional` or `required`: whether a token vouches for this user (its id
    /// is then derived from the token's `sub`). Absent with `AUTH=off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The best status of their tabs.
    pub status: Status,
    /// Since when `status` holds, ms since the Unix epoch by the store's clock.
    pub status_since: u64,
    /// The location of their most recently active tab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoomEvent {
    pub room_id: RoomId,
    pub from: Id,
    pub event: Arc<str>,
    pub data: RawJson,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub message: String,
}

/// Stable error codes: clients may switch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    UnknownType,
    BadMessage,
    NotJoined,
    AlreadyJoined,
    InvalidId,
    InvalidProto,
    InvalidToken,
    InvalidUser,
    StateTooLarge,
    EventTooLarge,
    RateLimited,
    RoomFull,
    TokenExpired,
    Forbidden,
    LocationTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadMessage,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::InvalidId,
        ErrorCode::InvalidProto,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidUser,
        ErrorCode::StateTooLarge,
        ErrorCode::EventTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::RoomFull,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::LocationTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidProto => "invalid_proto",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidUser => "invalid_user",
            ErrorCode::StateTooLarge => "state_too_large",
            ErrorCode::EventTooLarge => "event_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::LocationTooLarge => "location_too_large",
        }
    }
}

/// Bad input from one socket: answered with an `error` message, the socket stays open.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }

    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::Error(ErrorMsg {
            code: self.code,
            message: self.message.clone(),
        })
    }
}

/// Decode one text frame, telling bad JSON, an unknown type and a malformed message apart.
pub fn decode(text: &str) -> Result<ClientMsg, Rejection> {
    match serde_json::from_str::<ClientMsg>(text) {
        Ok(msg) => Ok(msg),
        Err(err) => {
            // Only the error path pays for a second look at the frame.
            #[derive(Deserialize)]
            struct Envelope {
                #[serde(rename = "type")]
                kind: Option<Value>,
            }
            const KNOWN: [&str; 8] = [
                "hello", "ping", "state", "event", "sync", "auth", "status", "location",
            ];
            match serde_json::from_str::<Envelope>(text) {
                Err(_) => Err(Rejection::new(
                    ErrorCode::BadJson,
                    "frame is not a JSON object",
                )),
                Ok(Envelope {
                    kind: Some(Value::String(kind)),
                }) if KNOWN.contains(&kind.as_str()) => Err(Rejection::new(
                    ErrorCode::BadMessage,
                    format!("bad {kind} message: {err}"),
                )),
                Ok(Envelope { kind }) => Err(Rejection::new(
                    ErrorCode::UnknownType,
                    match kind {
                        Some(Value::String(kind)) => format!("unknown message type {kind:?}"),
                        _ => "message has no string \"type\"".to_owned(),
                    },
                )),
            }
        }
    }
}

/// Serialise a server message once, to be queued on any number of sockets.
pub fn encode(msg: &ServerMsg) -> String {
    serde_json::to_string(msg).expect("server messages always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_fall_back_to_lobby() {
        assert_eq!(
            RoomId::parse_or_lobby("design-review").as_str(),
            "design-review"
        );
        for bad in ["", "Lobby", "a b", "x/y", "é", &"a".repeat(65)] {
            assert_eq!(RoomId::parse_or_lobby(bad).as_str(), LOBBY, "{bad:?}");
        }
        assert!(RoomId::is_valid(&"a".repeat(64)));
    }

    #[test]
    fn tab_ids() {
        assert!(is_valid_id("Ab_9-x"));
        assert!(is_valid_id(&"a".repeat(128)));
        for bad in ["", "a b", "a.b", "ü", &"a".repeat(129)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn decode_tells_errors_apart() {
        let code = |t: &str| decode(t).unwrap_err().code;
        assert_eq!(code("{nope"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"id":"x"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"hello"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"type":"state","state":[1]}"#),
            ErrorCode::BadMessage
        );
        assert!(matches!(decode(r#"{"type":"ping"}"#), Ok(ClientMsg::Ping)));
    }

    fn hello(json: &str) -> Result<Join, Rejection> {
        match decode(json).unwrap() {
            ClientMsg::Hello(h) => h.validate(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hello_validation() {
        let j = hello(r#"{"type":"hello","id":"t1"}"#).unwrap();
        assert_eq!(j.proto, Proto::V1);
        assert_eq!(j.state.get(), "{}");
        let code = |t: &str| hello(t).unwrap_err().code;
        assert_eq!(code(r#"{"type":"hello","id":"a b"}"#), ErrorCode::InvalidId);
        assert_eq!(
            code(r#"{"type":"hello","id":"a","proto":3}"#),
            ErrorCode::InvalidProto
        );
        assert_eq!(
            code(r#"{"type":"hello","id":"a","proto":"2"}"#),
            ErrorCode::InvalidProto
        );
        assert_eq!(
            code(r##"{"type":"hello","id":"a","user":{"color":"red"}}"##),
            ErrorCode::InvalidUser
        );
        assert_eq!(
            code(r#"{"type":"hello","id":"a","user":{"avatar":"http://x/a.png"}}"#),
            ErrorCode::InvalidUser
        );
        let long = "n".repeat(65);
        assert_eq!(
            code(&format!(
                r#"{{"type":"hello","id":"a","user":{{"name":"{long}"}}}}"#
            )),
            ErrorCode::InvalidUser
        );
        let big = "x".repeat(1100);
        assert_eq!(
            code(&format!(
                r#"{{"type":"hello","id":"a","state":{{"s":"{big}"}}}}"#
            )),
            ErrorCode::StateTooLarge
        );
    }

    #[test]
    fn state_size_counts_compact_json() {
        // 1024 bytes exactly once compacted, however much whitespace the client sent.
        let filler = "x".repeat(1024 - r#"{"s":""}"#.len());
        let spaced = format!("{{ \"s\" :   \"{filler}\" }}");
        let map: Map<String, Value> = serde_json::from_str(&spaced).unwrap();
        assert_eq!(state_json(&map).unwrap().len(), 1024);
    }

    #[test]
    fn events() {
        let ev = |t: &str| match decode(t).unwrap() {
            ClientMsg::Event(e) => e.validate(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ev(r#"{"type":"event","event":"typing","data":{"typing":true}}"#)
                .unwrap()
                .typing,
            Some(true)
        );
        assert_eq!(
            ev(r#"{"type":"event","event":"typing","data":{"typing":"yes"}}"#)
                .unwrap_err()
                .code,
            ErrorCode::BadMessage
        );
        assert_eq!(
            ev(&format!(
                r#"{{"type":"event","event":"{}"}}"#,
                "e".repeat(33)
            ))
            .unwrap_err()
            .code,
            ErrorCode::BadMessage
        );
        let big = "x".repeat(1100);
        assert_eq!(
            ev(&format!(r#"{{"type":"event","event":"e","data":"{big}"}}"#))
                .unwrap_err()
                .code,
            ErrorCode::EventTooLarge
        );
    }

    #[test]
    fn status_and_location_messages() {
        assert!(matches!(
            decode(r#"{"type":"status","status":"idle"}"#),
            Ok(ClientMsg::Status(StatusUpdate {
                status: Status::Idle
            }))
        ));
        let code = |t: &str| decode(t).unwrap_err().code;
        assert_eq!(
            code(r#"{"type":"status","status":"busy"}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(code(r#"{"type":"status"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"location"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"type":"location","location":3}"#),
            ErrorCode::BadMessage
        );
        let clear = decode(r#"{"type":"location","location":null}"#).unwrap();
        assert_eq!(
            clear,
            ClientMsg::Location(LocationUpdate { location: None })
        );
        // `null` goes back out as `null`: the golden fixture round-trips.
        assert_eq!(
            serde_json::to_string(&clear).unwrap(),
            r#"{"type":"location","location":null}"#
        );
    }

    #[test]
    fn locations_are_at_most_128_bytes() {
        assert_eq!(location(None).unwrap(), None);
        assert_eq!(location(Some(String::new())).unwrap(), None);
        assert_eq!(
            location(Some("x".repeat(128))).unwrap().as_deref(),
            Some(&*"x".repeat(128))
        );
        // Bytes, not characters: 65 two-byte characters are 130 bytes.
        let err = location(Some("é".repeat(65))).unwrap_err();
        assert_eq!(err.code, ErrorCode::LocationTooLarge);
        assert_eq!(err.message, "location is 130 bytes; the limit is 128");
    }

    #[test]
    fn a_hello_may_carry_status_and_location() {
        let j = hello(r#"{"type":"hello","id":"t","proto":2,"status":"away","location":"risks"}"#)
            .unwrap();
        assert_eq!(
            (j.status, j.location.as_deref()),
            (Status::Away, Some("risks"))
        );
        let j = hello(r#"{"type":"hello","id":"t"}"#).unwrap();
        assert_eq!((j.status, j.location), (Status::Active, None));
        let long = "l".repeat(129);
        let err = hello(&format!(
            r#"{{"type":"hello","id":"t","location":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::LocationTooLarge);
        assert_eq!(
            decode(r#"{"type":"hello","id":"t","status":"asleep"}"#)
                .unwrap_err()
                .code,
            ErrorCode::BadMessage
        );
    }

    #[test]
    fn the_best_status_wins() {
        use Status::*;
        assert_eq!(Status::best([]), None);
        assert_eq!(Status::best([Away]), Some(Away));
        assert_eq!(Status::best([Away, Active]), Some(Active));
        assert_eq!(Status::best([Away, Away]), Some(Away));
        assert_eq!(Status::best([Away, Idle, Away]), Some(Idle));
        assert_eq!(Status::best([Idle, Active, Away]), Some(Active));
    }

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
