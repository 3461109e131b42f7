//! The wire protocol as a client sees it, written from docs/ARCHITECTURE.md and the golden fixtures,
//! independent of the `herenow` crate so the tool also measures other servers that speak
//! protocol 1.
//!
//! A benchmark client may hold thousands of rosters of thousands of members (the fan-out
//! room), so it does not keep member sets: a roster is its size plus an order-independent
//! hash of its ids (the wrapping sum of one 64-bit hash per id). Two rosters with the same
//! size and hash are the same set, up to a 64-bit collision.

use serde::Deserialize;
use std::borrow::Cow;

/// The first frame of a socket: join the room. Protocol 1 is sent exactly as the
/// reference template's client sends it (no `proto` field).
pub fn hello(id: &str, proto: u8) -> String {
    if proto >= 2 {
        format!(r#"{{"type":"hello","id":"{id}","proto":{proto}}}"#)
    } else {
        format!(r#"{{"type":"hello","id":"{id}"}}"#)
    }
}

/// Replace my presence state; `seq` lets receivers tell which change they have seen.
pub fn state(seq: u64) -> String {
    format!(r#"{{"type":"state","state":{{"seq":{seq}}}}}"#)
}

/// Ask for a full snapshot (protocol 2).
pub const SYNC: &str = r#"{"type":"sync"}"#;

/// One server frame, every message type folded into one struct of optional fields.
///
/// Frames are read by a scanner of our own rather than serde: a joiner's snapshot in a
/// 10,000-member room is ~700 KB and a fill moves gigabytes of them, so a frame is
/// checked for well-formed JSON in one pass that decodes only what the bench uses (type,
/// versions, counts, error code) and keeps the lists as text. The lists are walked again
/// only as far as needed: ids for the set hash, users only until the watched one.
#[derive(Debug, Default)]
pub struct Frame<'a> {
    pub kind: Cow<'a, str>,
    /// Arrays of ids (`members`, `left`).
    pub members: Option<List<'a>>,
    pub left: Option<List<'a>>,
    pub count: Option<u64>,
    pub version: Option<u64>,
    pub prev: Option<u64>,
    /// Arrays of user objects (`users`, `joined`, `updated`).
    pub users: Option<List<'a>>,
    pub joined: Option<List<'a>>,
    pub updated: Option<List<'a>>,
    pub code: Option<Cow<'a, str>>,
}

/// A JSON array from a frame, already checked: of strings (ids) or of objects that each
/// have a string `id` (users).
#[derive(Debug, Clone, Copy)]
pub struct List<'a>(&'a str);

/// The parts of a protocol-2 user the bench looks at.
#[derive(Debug)]
pub struct User<'a> {
    pub id: Cow<'a, str>,
    /// The `state` value as JSON text.
    pub state: Option<&'a str>,
}

/// A frame that is not the JSON (or not the shape) the protocol describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFrame;

impl<'a> Frame<'a> {
    pub fn parse(text: &'a str) -> Result<Frame<'a>, BadFrame> {
        let mut sc = Scan::new(text);
        let mut f = Frame::default();
        let mut kind = None;
        sc.object(|sc, key| {
            match key.as_ref() {
                "type" => kind = Some(sc.string()?),
                "members" => f.members = sc.nullable(Scan::id_list)?,
                "left" => f.left = sc.nullable(Scan::id_list)?,
                "users" => f.users = sc.nullable(Scan::skim_array)?,
                "joined" => f.joined = sc.nullable(Scan::user_list)?,
                "updated" => f.updated = sc.nullable(Scan::user_list)?,
                "count" => f.count = sc.nullable(Scan::u64)?,
                "version" => f.version = sc.nullable(Scan::u64)?,
                "prev" => f.prev = sc.nullable(Scan::u64)?,
                "code" => f.code = sc.nullable(Scan::string)?,
                _ => sc.skip()?,
            }
            Ok(())
        })?;
        sc.end()?;
        f.kind = kind.ok_or(BadFrame)?;
        // Skimmed users are the member set when there is no `members`: check them whole.
        if let (None, Some(users)) = (&f.members, f.users) {
            Scan::new(users.0).user_list()?;
        }
        Ok(f)
    }
}

impl<'a> List<'a> {
    /// The ids of an id list.
    pub fn ids(self) -> impl Iterator<Item = Cow<'a, str>> {
        let mut sc = Scan::new(self.0);
        let mut first = sc.eat(b'[').is_ok();
        std::iter::from_fn(move || {
            if !sc.next_item(&mut first).ok()? {
                return None;
            }
            sc.string().ok()
        })
    }

    /// The users of a user list, in order.
    pub fn users(self) -> impl Iterator<Item = User<'a>> {
        let mut sc = Scan::new(self.0);
        let mut first = sc.eat(b'[').is_ok();
        std::iter::from_fn(move || {
            if !sc.next_item(&mut first).ok()? {
                return None;
            }
            sc.user().ok()
        })
    }
}

/// A cursor over JSON text that checks the grammar (RFC 8259) as it skips, decoding only
/// on request. Errors carry no detail: the bench only counts malformed frames.
struct Scan<'a> {
    s: &'a str,
    i: usize,
    depth: u32,
}

type Scanned<T> = Result<T, BadFrame>;

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: u32 = 128;

impl<'a> Scan<'a> {
    fn new(s: &'a str) -> Scan<'a> {
        Scan { s, i: 0, depth: 0 }
    }

    fn peek(&mut self) -> Option<u8> {
        let b = self.s.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(self.i) {
            self.i += 1;
        }
        b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Scanned<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(BadFrame)
        }
    }

    fn end(&mut self) -> Scanned<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(BadFrame),
        }
    }

    /// A string; borrowed unless it has escapes.
    fn string(&mut self) -> Scanned<Cow<'a, str>> {
        let (start, escaped) = self.string_span()?;
        if !escaped {
            return Ok(Cow::Borrowed(&self.s[start + 1..self.i - 1]));
        }
        serde_json::from_str::<String>(&self.s[start..self.i])
            .map(Cow::Owned)
            .map_err(|_| BadFrame)
    }

    /// Skips a string: its start (the quote) and whether it has escapes.
    fn string_span(&mut self) -> Scanned<(usize, bool)> {
        self.eat(b'"')?;
        let start = self.i - 1;
        let b = self.s.as_bytes();
        let mut escaped = false;
        loop {
            // Plain bytes in one tight loop; only quotes, escapes and controls stop it.
            let plain = b[self.i..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .ok_or(BadFrame)?;
            self.i += plain;
            match b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok((start, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = b.get(self.i + 2..self.i + 6).ok_or(BadFrame)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(BadFrame);
                            }
                            self.i += 6;
                        }
                        _ => return Err(BadFrame),
                    }
                }
                _ => return Err(BadFrame),
            }
        }
    }

    fn number(&mut self) -> Scanned<&'a str> {
        self.peek();
        let b = self.s.as_bytes();
        let start = self.i;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = |sc: &mut Scan, b: &[u8]| {
            let from = sc.i;
            while b.get(sc.i).is_some_and(u8::is_ascii_digit) {
                sc.i += 1;
            }
            sc.i > from
        };
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self, b);
            }
            _ => return Err(BadFrame),
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self, b) {
                return Err(BadFrame);
            }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self, b) {
                return Err(BadFrame);
            }
        }
        Ok(&self.s[start..self.i])
    }

    fn u64(&mut self) -> Scanned<u64> {
        self.number()?.parse().map_err(|_| BadFrame)
    }

    fn literal(&mut self, word: &str) -> Scanned<()> {
        self.peek();
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(BadFrame)
        }
    }

    /// `null` as `None`, else the value read by `f`.
    fn nullable<T>(&mut self, f: impl FnOnce(&mut Self) -> Scanned<T>) -> Scanned<Option<T>> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            return Ok(None);
        }
        f(self).map(Some)
    }

    /// Skips any value, checking it.
    fn skip(&mut self) -> Scanned<()> {
        match self.peek().ok_or(BadFrame)? {
            b'"' => self.string_span().map(drop),
            b'{' => self.object(|sc, _| sc.skip()),
            b'[' => self.array(Scan::skip),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    /// Skips a value; its text.
    fn raw(&mut self) -> Scanned<&'a str> {
        self.peek();
        let start = self.i;
        self.skip()?;
        Ok(&self.s[start..self.i])
    }

    fn nest(&mut self) -> Scanned<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(BadFrame);
        }
        Ok(())
    }

    /// An object: `f` is called with each key and must consume its value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, Cow<'a, str>) -> Scanned<()>) -> Scanned<()> {
        self.eat(b'{')?;
        self.nest()?;
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                let key = self.string()?;
                self.eat(b':')?;
                f(self, key)?;
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(BadFrame),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// An array: `f` is called for each element and must consume it.
    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Scanned<()>) -> Scanned<()> {
        self.eat(b'[')?;
        self.nest()?;
        let mut first = true;
        while self.next_item(&mut first)? {
            f(self)?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Inside an array (after its `[`): true when an element follows, false after the
    /// closing `]`.
    fn next_item(&mut self, first: &mut bool) -> Scanned<bool> {
        if *first {
            *first = false;
            if self.peek() == Some(b']') {
                self.i += 1;
                return Ok(false);
            }
            return Ok(true);
        }
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(b']') => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(BadFrame),
        }
    }

    fn id_list(&mut self) -> Scanned<List<'a>> {
        self.peek();
        let start = self.i;
        self.array(|sc| sc.string_span().map(drop))?;
        Ok(List(&self.s[start..self.i]))
    }

    fn user_list(&mut self) -> Scanned<List<'a>> {
        self.peek();
        let start = self.i;
        self.array(|sc| sc.user().map(drop))?;
        Ok(List(&self.s[start..self.i]))
    }

    /// An array taken at its brackets: strings (and their escapes) and nesting are
    /// followed, nothing else is checked. For a snapshot's `users`, the bulk of a big
    /// snapshot, which the roster only looks into for the watched member; walking it
    /// (`List::users`) stops at anything malformed.
    fn skim_array(&mut self) -> Scanned<List<'a>> {
        if self.peek() != Some(b'[') {
            return Err(BadFrame);
        }
        let b = self.s.as_bytes();
        let start = self.i;
        let mut depth = 0usize;
        while let Some(&c) = b.get(self.i) {
            match c {
                b'"' => {
                    self.string_span()?;
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(List(&self.s[start..self.i]));
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(BadFrame)
    }

    /// A user object: its `id` (required, a string) and `state` (as text).
    fn user(&mut self) -> Scanned<User<'a>> {
        let mut id = None;
        let mut state = None;
        self.object(|sc, key| {
            match key.as_ref() {
                "id" => id = Some(sc.string()?),
                "state" => state = Some(sc.raw()?),
                _ => sc.skip()?,
            }
            Ok(())
        })?;
        Ok(User {
            id: id.ok_or(BadFrame)?,
            state,
        })
    }
}

/// Hash of one presence id (FNV-1a, then a splitmix64 finaliser to spread the bits so the
/// sum over a set behaves).
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A member set as size and order-independent hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetKey {
    pub count: u32,
    pub hash: u64,
}

impl SetKey {
    pub fn of<'s>(ids: impl IntoIterator<Item = &'s str>) -> SetKey {
        let mut k = SetKey::default();
        for id in ids {
            k.add(id);
        }
        k
    }
    /// The same from owned-or-borrowed ids, as frames give them.
    pub fn of_ids<'s>(ids: impl IntoIterator<Item = Cow<'s, str>>) -> SetKey {
        let mut k = SetKey::default();
        for id in ids {
            k.add(&id);
        }
        k
    }
    pub fn add(&mut self, id: &str) {
        self.count = self.count.wrapping_add(1);
        self.hash = self.hash.wrapping_add(id_hash(id));
    }
    pub fn remove(&mut self, id: &str) {
        self.count = self.count.wrapping_sub(1);
        self.hash = self.hash.wrapping_sub(id_hash(id));
    }
}

/// What applying one frame did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The member set changed (or the first roster arrived).
    pub set_changed: bool,
    /// The watched member's `state.seq` changed.
    pub watch_changed: bool,
    /// A diff did not follow the held version: the client must send `sync`.
    pub send_sync: bool,
    /// The frame was a full roster (`presence`).
    pub snapshot: bool,
}

/// Counters of frames that were not plain roster updates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Anomalies {
    /// `error` frames received.
    pub errors: u64,
    /// Diffs that did not follow the held version (each answered with `sync`).
    pub gaps: u64,
    /// Diffs older than the held version, ignored.
    pub stale: u64,
    /// Protocol-1 rosters whose version went backwards (applied anyway, as the reference
    /// client does).
    pub regressions: u64,
    /// Frames that are not JSON, unknown types, or `count` that disagrees with `members`.
    pub malformed: u64,
    /// Frames a protocol-1 socket must never receive (`diff`, `event`, `pong`).
    pub off_protocol: u64,
}

/// One client's view of its room.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub proto: u8,
    /// A roster has been received since the hello.
    pub have: bool,
    pub set: SetKey,
    pub version: u64,
    /// A `sync` was sent and its snapshot has not arrived yet: diffs are ignored.
    pub awaiting_sync: bool,
    /// The member whose state this client follows (fan-out).
    pub watch: Option<Box<str>>,
    pub watch_seq: Option<u64>,
    pub anomalies: Anomalies,
    /// The last error code received.
    pub last_error: Option<String>,
}

impl Roster {
    pub fn new(proto: u8, watch: Option<&str>) -> Roster {
        Roster {
            proto,
            watch: watch.map(Into::into),
            ..Roster::default()
        }
    }

    /// Applies one text frame.
    pub fn apply_text(&mut self, text: &str) -> Applied {
        match Frame::parse(text) {
            Ok(f) => self.apply(&f),
            Err(_) => {
                self.anomalies.malformed += 1;
                Applied::default()
            }
        }
    }

    /// Applies one decoded frame, following docs/ARCHITECTURE.md: a snapshot replaces everything; a
    /// diff applies only on top of the version it names (left, then joined, then updated).
    pub fn apply(&mut self, f: &Frame) -> Applied {
        let mut out = Applied::default();
        match f.kind.as_ref() {
            "presence" => {
                let set = match (&f.members, &f.users) {
                    (Some(m), _) => SetKey::of_ids(m.ids()),
                    (None, Some(u)) => SetKey::of_ids(u.users().map(|u| u.id)),
                    (None, None) => {
                        self.anomalies.malformed += 1;
                        return out;
                    }
                };
                if f.count.is_some_and(|c| c != u64::from(set.count)) {
                    self.anomalies.malformed += 1;
                }
                let version = f.version.unwrap_or(self.version);
                if self.have && version < self.version {
                    self.anomalies.regressions += 1;
                }
                out.snapshot = true;
                out.set_changed = !self.have || set != self.set;
                self.set = set;
                self.version = version;
                self.have = true;
                self.awaiting_sync = false;
                if let Some(users) = f.users {
                    out.watch_changed = self.watch_users(users);
                }
            }
            "diff" => {
                if self.proto < 2 {
                    self.anomalies.off_protocol += 1;
                }
                let (Some(prev), Some(version)) = (f.prev, f.version) else {
                    self.anomalies.malformed += 1;
                    return out;
                };
                if !self.have || self.awaiting_sync {
                    return out;
                }
                if prev != self.version {
                    if version <= self.version {
                        self.anomalies.stale += 1;
                    } else {
                        self.anomalies.gaps += 1;
                        self.awaiting_sync = true;
                        out.send_sync = true;
                    }
                    return out;
                }
                let before = self.set;
                for id in f.left.iter().flat_map(|l| l.ids()) {
                    self.set.remove(&id);
                }
                for u in f.joined.iter().flat_map(|l| l.users()) {
                    self.set.add(&u.id);
                }
                self.version = version;
                out.set_changed = self.set != before;
                let mut w = false;
                if let Some(j) = f.joined {
                    w |= self.watch_users(j);
                }
                if let Some(u) = f.updated {
                    w |= self.watch_users(u);
                }
                out.watch_changed = w;
            }
            "error" => {
                self.anomalies.errors += 1;
                self.last_error = f.code.as_ref().map(|c| c.to_string());
            }
            "event" | "pong" => {
                if self.proto < 2 {
                    self.anomalies.off_protocol += 1;
                }
            }
            _ => self.anomalies.malformed += 1,
        }
        out
    }

    /// Follows the watched member's `state.seq`; true when it changed.
    fn watch_users(&mut self, users: List) -> bool {
        let Some(watch) = self.watch.as_deref() else {
            return false;
        };
        let Some(user) = users.users().find(|u| u.id == watch) else {
            return false;
        };
        let seq = user.state.and_then(|raw| {
            #[derive(Deserialize)]
            struct Seq {
                seq: Option<u64>,
            }
            serde_json::from_str::<Seq>(raw).ok()?.seq
        });
        let changed = seq != self.watch_seq;
        self.watch_seq = seq;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/protocol");

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!("{ROOT}/{path}"))
            .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
            .trim()
            .to_string()
    }

    #[test]
    fn client_frames_match_the_fixtures() {
        let v1: serde_json::Value = serde_json::from_str(&hello("k3f9a2", 1)).unwrap();
        let f1: serde_json::Value = serde_json::from_str(&fixture("v1/client.hello.json")).unwrap();
        assert_eq!(v1, f1);
        let v2: serde_json::Value = serde_json::from_str(&hello("tab-2", 2)).unwrap();
        let f2: serde_json::Value =
            serde_json::from_str(&fixture("v2/client.hello.minimal.json")).unwrap();
        assert_eq!(v2, f2);
        let s: serde_json::Value = serde_json::from_str(&state(3)).unwrap();
        assert_eq!(s["type"], "state");
        assert_eq!(s["state"]["seq"], 3);
        let sync: serde_json::Value = serde_json::from_str(SYNC).unwrap();
        let fs: serde_json::Value = serde_json::from_str(&fixture("v2/client.sync.json")).unwrap();
        assert_eq!(sync, fs);
    }

    /// Every server message of the golden fixtures.
    const SERVER_FIXTURES: [&str; 9] = [
        "v1/server.presence.json",
        "v1/server.error.json",
        "v2/server.presence.json",
        "v2/server.diff.json",
        "v2/server.error.json",
        "v2/server.error.location.json",
        "v2/server.event.json",
        "v2/server.event.typing.json",
        "v2/server.pong.json",
    ];

    #[test]
    fn every_server_fixture_decodes() {
        for p in SERVER_FIXTURES {
            let text = fixture(p);
            let f = Frame::parse(&text).unwrap_or_else(|e| panic!("{p}: {e:?}"));
            assert!(!f.kind.is_empty(), "{p}");
        }
    }

    #[test]
    fn protocol_1_roster_from_the_fixture() {
        let mut r = Roster::new(1, None);
        let a = r.apply_text(&fixture("v1/server.presence.json"));
        assert!(a.set_changed && a.snapshot);
        assert_eq!(r.set, SetKey::of(["x7q1m0", "k3f9a2"]));
        assert_eq!(r.version, 4);
        // The same roster again changes nothing.
        assert!(
            !r.apply_text(&fixture("v1/server.presence.json"))
                .set_changed
        );
        r.apply_text(&fixture("v1/server.error.json"));
        assert_eq!(r.anomalies.errors, 1);
        assert_eq!(r.last_error.as_deref(), Some("invalid_id"));
        assert_eq!(r.anomalies.malformed, 0);
    }

    #[test]
    fn protocol_2_snapshot_then_diff_from_the_fixtures() {
        let mut r = Roster::new(2, Some("tab-grace"));
        r.apply_text(&fixture("v2/server.presence.json"));
        assert_eq!(r.set, SetKey::of(["tab-ada-1", "tab-linus"]));
        assert_eq!(r.version, 7);
        let a = r.apply_text(&fixture("v2/server.diff.json"));
        assert!(a.set_changed && !a.send_sync);
        assert_eq!(r.set, SetKey::of(["tab-ada-1", "tab-grace"]));
        assert_eq!(r.version, 9);
        assert_eq!(r.watch_seq, None);
        assert_eq!(r.anomalies, Anomalies::default());
    }

    #[test]
    fn a_gap_asks_for_sync_and_ignores_diffs_until_the_snapshot() {
        let mut r = Roster::new(2, None);
        r.apply_text(r#"{"type":"presence","roomId":"a","count":1,"members":["a"],"version":3,"users":[],"self":"a"}"#);
        let d = r#"{"type":"diff","roomId":"a","prev":4,"version":5,"joined":[{"id":"b"}],"left":[],"updated":[]}"#;
        let a = r.apply_text(d);
        assert!(a.send_sync && !a.set_changed);
        assert_eq!(r.anomalies.gaps, 1);
        // While awaiting the snapshot nothing applies and no second sync is asked for.
        assert!(!r.apply_text(d).send_sync);
        r.apply_text(
            r#"{"type":"presence","roomId":"a","count":2,"members":["a","b"],"version":5}"#,
        );
        assert_eq!(r.set, SetKey::of(["a", "b"]));
        // An old diff after the snapshot is stale, not a gap.
        let old = r#"{"type":"diff","roomId":"a","prev":3,"version":4,"joined":[],"left":["x"],"updated":[]}"#;
        assert!(!r.apply_text(old).send_sync);
        assert_eq!(r.anomalies.stale, 1);
    }

    #[test]
    fn watch_follows_state_seq_in_joined_and_updated() {
        let mut r = Roster::new(2, Some("m0"));
        r.apply_text(r#"{"type":"presence","roomId":"f","count":1,"members":["m0"],"version":1,"users":[{"id":"m0","state":{},"tabs":1,"since":1}]}"#);
        assert_eq!(r.watch_seq, None);
        let a = r.apply_text(r#"{"type":"diff","roomId":"f","prev":1,"version":2,"joined":[],"left":[],"updated":[{"id":"m0","state":{"seq":7},"tabs":1,"since":1}]}"#);
        assert!(a.watch_changed && !a.set_changed);
        assert_eq!(r.watch_seq, Some(7));
    }

    #[test]
    fn protocol_1_flags_off_protocol_frames_and_bad_counts() {
        let mut r = Roster::new(1, None);
        r.apply_text(r#"{"type":"pong"}"#);
        r.apply_text(r#"{"type":"presence","roomId":"a","count":3,"members":["a"],"version":1}"#);
        r.apply_text("not json");
        assert_eq!(r.anomalies.off_protocol, 1);
        assert_eq!(r.anomalies.malformed, 2);
    }

    /// What the scanner read, in serde_json's terms, for comparing the two.
    fn scanned(text: &str) -> serde_json::Value {
        let f = Frame::parse(text).unwrap_or_else(|_| panic!("scanner refused {text}"));
        let ids = |l: Option<List>| l.map(|l| l.ids().map(|i| i.into_owned()).collect::<Vec<_>>());
        let users = |l: Option<List>| {
            l.map(|l| {
                l.users()
                    .map(|u| {
                        let state: Option<serde_json::Value> =
                            u.state.map(|s| serde_json::from_str(s).unwrap());
                        serde_json::json!({"id": u.id, "state": state})
                    })
                    .collect::<Vec<_>>()
            })
        };
        serde_json::json!({
            "type": f.kind, "count": f.count, "version": f.version, "prev": f.prev,
            "code": f.code, "members": ids(f.members), "left": ids(f.left),
            "users": users(f.users), "joined": users(f.joined), "updated": users(f.updated),
        })
    }

    /// The same fields read by serde_json.
    fn reference(text: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let users = |k: &str| {
            v.get(k).and_then(|a| a.as_array()).map(|a| {
                a.iter()
                    .map(|u| serde_json::json!({"id": u["id"], "state": u.get("state")}))
                    .collect::<Vec<_>>()
            })
        };
        let field = |k: &str| v.get(k).cloned().unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "type": field("type"), "count": field("count"), "version": field("version"),
            "prev": field("prev"), "code": field("code"), "members": field("members"),
            "left": field("left"), "users": users("users"), "joined": users("joined"),
            "updated": users("updated"),
        })
    }

    #[test]
    fn the_scanner_reads_what_serde_reads() {
        let mut frames: Vec<String> = SERVER_FIXTURES.iter().map(|p| fixture(p)).collect();
        frames.extend(
            [
                // Whitespace anywhere JSON allows it, escapes, nested and odd values.
                " {\n \"type\" : \"presence\" ,\"count\":2, \"members\" : [ \"a\\u0062\" , \"c\\\"d\" ],\r\n\t\"version\":0 } ",
                r#"{"type":"diff","prev":1,"version":2,"joined":[{"tabs":1,"id":"x","state":{"seq":3,"deep":[[{"a":null}],true,false,-1.5e-3]}}],"left":[],"updated":[{"id":"\u00e9t\u00e9"}]}"#,
                r#"{"type":"presence","members":[],"users":[],"version":7,"self":"a","extra":{"n":[1,2,{"x":"}"}]}}"#,
                r#"{"type":"error","code":null,"message":"bad \"thing\" \\ here"}"#,
                r#"{"type":"presence","members":null,"count":0,"roomId":"r","version":0,"users":[{"id":"u","state":"str"}]}"#,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        for text in &frames {
            assert_eq!(scanned(text), reference(text), "{text}");
        }
    }

    #[test]
    fn the_scanner_refuses_what_is_not_a_frame() {
        let deep = format!(
            "{{\"type\":\"x\",\"a\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        for bad in [
            "",
            "[1]",
            r#"{"type":"presence",}"#,
            r#"{"type":"presence"} x"#,
            r#"{"type":"presence" "members":[]}"#,
            r#"{"members":[]}"#,
            r#"{"type":"x","a":01}"#,
            r#"{"type":"x","a":1.}"#,
            r#"{"type":"x","a":-}"#,
            r#"{"type":"x","a":tru}"#,
            "{\"type\":\"x\",\"a\":\"\u{1}\"}",
            r#"{"type":"x","a":"\q"}"#,
            r#"{"type":"x","a":"\u12g4"}"#,
            r#"{"type":"x","a":"open}"#,
            r#"{"type":"x","a":[1,]}"#,
            r#"{"type":"x","a":[1 2]}"#,
            r#"{"type":7}"#,
            // The shapes the protocol promises.
            r#"{"type":"presence","members":[1]}"#,
            r#"{"type":"presence","members":{}}"#,
            r#"{"type":"presence","users":[{"name":"no id"}]}"#,
            r#"{"type":"diff","joined":["a"]}"#,
            r#"{"type":"diff","version":-1}"#,
            r#"{"type":"diff","version":1.5}"#,
            deep.as_str(),
        ] {
            assert!(Frame::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn set_key_is_order_independent() {
        let mut k = SetKey::of(["a", "b", "c"]);
        assert_eq!(k, SetKey::of(["c", "a", "b"]));
        k.remove("b");
        assert_eq!(k, SetKey::of(["a", "c"]));
        assert_ne!(SetKey::of(["ab"]), SetKey::of(["ba"]));
    }
}
