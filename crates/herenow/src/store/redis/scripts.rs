//! What the store says to Redis and how it reads the answers: key and channel names,
//! the Lua scripts (`lua/*.lua`, each with a `KEYS`/`ARGV` header), their invocations
//! and pipelines, the answers parsed into [`Change`]s and rooms, and what travels on a
//! room's channel.

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Script, ScriptInvocation, Value};
use serde::{Deserialize, Serialize};

use super::link::Conn;
use super::Inner;
use crate::protocol::{Id, RoomId};
use crate::room::{Change, Entry, InstanceId, RoomState, Stamped};
use crate::store::{StoreError, StoreEvent};

/// Prepended to every room script: how they all read their keys and common arguments.
const ROOM_PRELUDE: &str = include_str!("lua/room.lua");

/// Key and channel names, all built here.
pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    /// online, meta, version, seen: the KEYS of every room script, in order.
    pub(super) fn room(&self, room: &RoomId) -> [String; 4] {
        let p = &self.prefix;
        [
            format!("{p}:{{{room}}}:online"),
            format!("{p}:{{{room}}}:meta"),
            format!("{p}:{{{room}}}:version"),
            format!("{p}:{{{room}}}:seen"),
        ]
    }

    pub(super) fn channel(&self, room: &RoomId) -> String {
        format!("{}:{{{room}}}:changed", self.prefix)
    }

    pub(super) fn leases(&self) -> String {
        format!("{}:leases", self.prefix)
    }

    /// The room a channel name belongs to (only this store's own channels).
    pub(super) fn room_of_channel(&self, channel: &[u8]) -> Option<RoomId> {
        let channel = std::str::from_utf8(channel).ok()?;
        let rest = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?;
        let room = rest.strip_suffix("}:changed")?;
        RoomId::is_valid(room).then(|| RoomId::parse_or_lobby(room))
    }
}

/// The scripts, each loaded by SHA (and loaded again after a Redis restart).
pub(super) struct Scripts {
    pub(super) write: Script,
    pub(super) register: Script,
    pub(super) touch: Script,
    pub(super) snapshot: Script,
    pub(super) lease: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        let room = |body: &str| Script::new(&format!("{ROOM_PRELUDE}\n{body}"));
        Scripts {
            write: room(include_str!("lua/write.lua")),
            register: room(include_str!("lua/register.lua")),
            touch: room(include_str!("lua/touch.lua")),
            snapshot: Script::new(include_str!("lua/snapshot.lua")),
            lease: Script::new(include_str!("lua/lease.lua")),
        }
    }

    pub(super) fn all(&self) -> [&Script; 5] {
        [
            &self.write,
            &self.register,
            &self.touch,
            &self.snapshot,
            &self.lease,
        ]
    }
}

/// What travels on a room's channel.
#[derive(Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(super) enum Wire {
    /// Written by the scripts, as text.
    Change { change: Change },
    Event {
        origin: InstanceId,
        event: StoreEvent,
    },
}

/// [`Wire::Event`] as this instance writes it.
#[derive(Serialize)]
struct WireEvent<'a> {
    t: &'static str,
    origin: &'a str,
    event: &'a StoreEvent,
}

/// A `meta` value.
#[derive(Deserialize)]
struct StoredEntry {
    stamp: u64,
    entry: Entry,
}

/// One room's heartbeat: its version, and the change its pruning made, if any.
pub(super) type Touched = Result<(u64, Option<Change>), StoreError>;

fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Protocol(e.to_string()))
}

impl Inner {
    /// A room script's invocation with the keys and arguments every one of them takes.
    fn room_call<'a>(&self, script: &'a Script, room: &RoomId) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.room(room) {
            inv.key(key);
        }
        inv.arg(self.keys.channel(room))
            .arg(self.publish)
            .arg(&*self.instance)
            .arg(self.idle_ms());
        inv
    }

    pub(super) fn write_call(
        &self,
        room: &RoomId,
        entries: &[(Id, Option<Entry>)],
    ) -> Result<ScriptInvocation<'_>, StoreError> {
        let mut inv = self.room_call(&self.scripts.write, room);
        for (id, entry) in entries {
            inv.arg(&**id);
            match entry {
                Some(entry) => inv.arg(to_json(entry)?),
                None => inv.arg(""),
            };
        }
        Ok(inv)
    }

    pub(super) fn register_call(
        &self,
        room: &RoomId,
        entries: &[(Id, Entry)],
    ) -> Result<ScriptInvocation<'_>, StoreError> {
        let mut inv = self.room_call(&self.scripts.register, room);
        for (id, entry) in entries {
            inv.arg(&**id).arg(to_json(entry)?);
        }
        Ok(inv)
    }

    pub(super) fn snapshot_call(&self, room: &RoomId) -> ScriptInvocation<'_> {
        let [_, meta, version, _] = self.keys.room(room);
        let mut inv = self.scripts.snapshot.prepare_invoke();
        inv.key(meta).key(version);
        inv
    }

    /// `PUBLISH` (or `SPUBLISH`) of an event on the room's channel.
    pub(super) fn publish_cmd(
        &self,
        room: &RoomId,
        event: &StoreEvent,
    ) -> Result<redis::Cmd, StoreError> {
        let payload = to_json(&WireEvent {
            t: "event",
            origin: &self.instance,
            event,
        })?;
        Ok(redis::cmd(self.publish)
            .arg(self.keys.channel(room))
            .arg(payload)
            .to_owned())
    }

    /// Run a mutation script; the change it published, if any.
    pub(super) async fn mutate(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<Option<Change>, StoreError> {
        let mut conn = self.conn().await?;
        let payload: Option<String> = self.call(inv.invoke_async(&mut conn)).await?;
        payload.as_deref().map(parse_change).transpose()
    }

    fn touch_call(
        &self,
        room: &RoomId,
        dead: &[(InstanceId, u64)],
        idle_ms: u64,
    ) -> ScriptInvocation<'_> {
        let mut inv = self.room_call(&self.scripts.touch, room);
        inv.arg(idle_ms);
        for (inst, expiry) in dead {
            inv.arg(&**inst).arg(*expiry);
        }
        inv
    }

    /// Run touch.lua in every room: one pipeline on a single node, one per node on a
    /// cluster. Each room's version and the change its pruning made, if any.
    pub(super) async fn touch(
        &self,
        conn: &mut Conn,
        rooms: &[RoomId],
        dead: &[(InstanceId, u64)],
        idle_ms: u64,
    ) -> Result<Vec<Touched>, StoreError> {
        let calls: Vec<ScriptInvocation<'_>> = rooms
            .iter()
            .map(|room| self.touch_call(room, dead, idle_ms))
            .collect();
        match conn {
            Conn::Single(c) => {
                let values = self
                    .call(c.req_packed_commands(
                        &pipeline(&self.scripts.touch, &calls),
                        0,
                        calls.len() + 1,
                    ))
                    .await?;
                Ok(values.into_iter().skip(1).map(parse_touch).collect())
            }
            Conn::Cluster(c) => self.touch_cluster(c, rooms, &calls).await,
        }
    }
}

/// SCRIPT LOAD (so a Redis that restarted knows the script), then the calls.
fn pipeline(script: &Script, calls: &[ScriptInvocation<'_>]) -> redis::Pipeline {
    let refs: Vec<&ScriptInvocation<'_>> = calls.iter().collect();
    pipeline_refs(script, &refs)
}

/// [`pipeline`] of some of the calls.
pub(super) fn pipeline_refs(script: &Script, calls: &[&ScriptInvocation<'_>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.load_script(script);
    for call in calls {
        pipe.invoke_script(call);
    }
    pipe
}

/// A change as the scripts publish and return it.
pub(super) fn parse_change(payload: &str) -> Result<Change, StoreError> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(Wire::Change { change }) => Ok(change),
        Ok(Wire::Event { .. }) => Err(StoreError::Protocol("expected a change".into())),
        Err(err) => Err(StoreError::Protocol(format!(
            "bad change from redis: {err}"
        ))),
    }
}

/// touch.lua's answer: `{ version, change or "" }`.
pub(super) fn parse_touch(value: Value) -> Touched {
    let (version, payload): (u64, String) = FromRedisValue::from_redis_value(value)
        .map_err(|e| StoreError::Protocol(format!("bad heartbeat answer: {e}")))?;
    let change = (!payload.is_empty())
        .then(|| parse_change(&payload))
        .transpose()?;
    Ok((version, change))
}

/// snapshot.lua's answer: `{ version, field, value, field, value, ... }`.
pub(super) fn parse_snapshot(values: Vec<Value>) -> Result<RoomState, StoreError> {
    let bad = |e: &dyn std::fmt::Display| StoreError::Protocol(format!("bad snapshot: {e}"));
    let mut values = values.into_iter();
    let version: u64 = match values.next() {
        Some(v) => FromRedisValue::from_redis_value(v).map_err(|e| bad(&e))?,
        None => 0,
    };
    let mut entries = Vec::new();
    while let (Some(field), Some(value)) = (values.next(), values.next()) {
        let field: String = FromRedisValue::from_redis_value(field).map_err(|e| bad(&e))?;
        let value: Vec<u8> = FromRedisValue::from_redis_value(value).map_err(|e| bad(&e))?;
        let Some((instance, id)) = field.rsplit_once('|') else {
            return Err(bad(&field));
        };
        let stored: StoredEntry = serde_json::from_slice(&value).map_err(|e| bad(&e))?;
        entries.push(Stamped {
            instance: instance.into(),
            id: id.into(),
            entry: stored.entry,
            stamp: stored.stamp,
        });
    }
    Ok(RoomState { version, entries })
}
