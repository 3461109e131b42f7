//! The wire protocol as a client sees it, written from DESIGN.md and the golden fixtures,
//! independent of the `herenow` crate so the tool also measures other servers that speak
//! protocol 1.
//!
//! A benchmark client may hold thousands of rosters of thousands of members (the fan-out
//! room), so it does not keep member sets: a roster is its size plus an order-independent
//! hash of its ids (the wrapping sum of one 64-bit hash per id). Two rosters with the same
//! size and hash are the same set, up to a 64-bit collision.

use serde::Deserialize;
use serde_json::value::RawValue;
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

/// One server frame, every message type folded into one struct of optional fields so a
/// frame is decoded in a single pass without copying ids.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub members: Option<Vec<Id<'a>>>,
    pub count: Option<u64>,
    pub version: Option<u64>,
    pub prev: Option<u64>,
    #[serde(borrow)]
    pub users: Option<Vec<User<'a>>>,
    #[serde(borrow)]
    pub joined: Option<Vec<User<'a>>>,
    #[serde(borrow)]
    pub left: Option<Vec<Id<'a>>>,
    #[serde(borrow)]
    pub updated: Option<Vec<User<'a>>>,
    #[serde(borrow)]
    pub code: Option<Cow<'a, str>>,
}

/// A presence id, borrowed from the frame when it has no escapes.
#[derive(Debug, Deserialize)]
pub struct Id<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// The parts of a protocol-2 user the bench looks at.
#[derive(Debug, Deserialize)]
pub struct User<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub state: Option<&'a RawValue>,
}

impl<'a> Frame<'a> {
    pub fn parse(text: &'a str) -> Result<Frame<'a>, serde_json::Error> {
        serde_json::from_str(text)
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

    /// Applies one decoded frame, following DESIGN.md: a snapshot replaces everything; a
    /// diff applies only on top of the version it names (left, then joined, then updated).
    pub fn apply(&mut self, f: &Frame) -> Applied {
        let mut out = Applied::default();
        match f.kind.as_ref() {
            "presence" => {
                let set = match (&f.members, &f.users) {
                    (Some(m), _) => SetKey::of(m.iter().map(|i| i.0.as_ref())),
                    (None, Some(u)) => SetKey::of(u.iter().map(|u| u.id.as_ref())),
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
                if let Some(users) = &f.users {
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
                for id in f.left.iter().flatten() {
                    self.set.remove(&id.0);
                }
                for u in f.joined.iter().flatten() {
                    self.set.add(&u.id);
                }
                self.version = version;
                out.set_changed = self.set != before;
                let mut w = false;
                if let Some(j) = &f.joined {
                    w |= self.watch_users(j);
                }
                if let Some(u) = &f.updated {
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
    fn watch_users(&mut self, users: &[User]) -> bool {
        let Some(watch) = self.watch.as_deref() else {
            return false;
        };
        let Some(user) = users.iter().find(|u| u.id == watch) else {
            return false;
        };
        let seq = user.state.and_then(|raw| {
            #[derive(Deserialize)]
            struct Seq {
                seq: Option<u64>,
            }
            serde_json::from_str::<Seq>(raw.get()).ok()?.seq
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

    #[test]
    fn every_server_fixture_decodes() {
        for p in [
            "v1/server.presence.json",
            "v1/server.error.json",
            "v2/server.presence.json",
            "v2/server.diff.json",
            "v2/server.error.json",
            "v2/server.event.json",
            "v2/server.event.typing.json",
            "v2/server.pong.json",
        ] {
            let text = fixture(p);
            let f = Frame::parse(&text).unwrap_or_else(|e| panic!("{p}: {e}"));
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

    #[test]
    fn set_key_is_order_independent() {
        let mut k = SetKey::of(["a", "b", "c"]);
        assert_eq!(k, SetKey::of(["c", "a", "b"]));
        k.remove("b");
        assert_eq!(k, SetKey::of(["a", "c"]));
        assert_ne!(SetKey::of(["ab"]), SetKey::of(["ba"]));
    }
}
