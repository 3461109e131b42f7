//! Redis Cluster: which node serves which slot, and the heartbeat as one pipeline per
//! node. Every key of a room carries the room as a hash tag, so a room is one slot and
//! its scripts run on one node; the rest of cluster routing (redirections, sharded
//! pub/sub) is the crate's.

use std::collections::HashMap;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{RedisError, ScriptInvocation, Value};

use super::scripts::{parse_touch, pipeline_refs, Touched};
use super::{lock, Inner};
use crate::protocol::RoomId;
use crate::store::StoreError;

/// Slot ranges and the primary serving each: `(first, last, host, port)`.
pub(super) type SlotMap = Vec<(u16, u16, String, u16)>;

/// The cluster's slot ranges and the primary serving each.
pub(super) async fn cluster_slots(conn: &mut ClusterConnection) -> Result<SlotMap, RedisError> {
    let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        if let [lo, hi, Value::Array(primary), ..] = &parts[..] {
            if let [host, port, ..] = &primary[..] {
                out.push((
                    redis::from_redis_value_ref(lo)?,
                    redis::from_redis_value_ref(hi)?,
                    redis::from_redis_value_ref(host)?,
                    redis::from_redis_value_ref(port)?,
                ));
            }
        }
    }
    Ok(out)
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key.
pub(super) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

impl Inner {
    /// One pipeline per node, the nodes in parallel. A room whose pipeline failed (its
    /// slot moved, say) is run again on its own, which follows redirections.
    pub(super) async fn touch_cluster(
        &self,
        conn: &mut ClusterConnection,
        rooms: &[RoomId],
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<Touched>, StoreError> {
        let slots = lock(&self.link).slots.clone();
        let mut by_node: HashMap<(String, u16), Vec<usize>> = HashMap::new();
        let mut unmapped = Vec::new();
        for (at, room) in rooms.iter().enumerate() {
            let slot = key_slot(self.keys.room(room)[0].as_bytes());
            match slots
                .as_ref()
                .and_then(|s| s.iter().find(|(lo, hi, _, _)| (*lo..=*hi).contains(&slot)))
            {
                Some((_, _, host, port)) => {
                    by_node.entry((host.clone(), *port)).or_default().push(at)
                }
                None => unmapped.push(at),
            }
        }
        let mut results: Vec<Option<Touched>> = (0..rooms.len()).map(|_| None).collect();
        let node_calls = by_node.into_iter().map(|((host, port), ats)| {
            let mut conn = conn.clone();
            let group: Vec<&ScriptInvocation<'_>> = ats.iter().map(|&at| &calls[at]).collect();
            let pipe = pipeline_refs(&self.scripts.touch, &group);
            async move {
                let route = SingleNodeRoutingInfo::ByAddress { host, port };
                let out = self
                    .call(conn.route_pipeline(pipe, 0, ats.len() + 1, route))
                    .await;
                (ats, out)
            }
        });
        let mut retry = unmapped;
        for (ats, out) in futures_util::future::join_all(node_calls).await {
            match out {
                Ok(values) => {
                    for (at, value) in ats.into_iter().zip(values.into_iter().skip(1)) {
                        match parse_touch(value) {
                            Ok(r) => results[at] = Some(Ok(r)),
                            Err(_) => retry.push(at),
                        }
                    }
                }
                Err(_) => retry.extend(ats),
            }
        }
        if !retry.is_empty() {
            // The slot map is stale (or a node is away): read it again for next time.
            if let Ok(fresh) = self.call(cluster_slots(conn)).await {
                lock(&self.link).slots = Some(fresh);
            }
            let singles = retry.iter().map(|&at| {
                let mut conn = conn.clone();
                let inv = &calls[at];
                async move {
                    let out: Result<Value, StoreError> = self
                        .call(inv.invoke_async(&mut conn))
                        .await
                        .map_err(StoreError::from);
                    (at, out.and_then(parse_touch))
                }
            });
            for (at, out) in futures_util::future::join_all(singles).await {
                results[at] = Some(out);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Protocol("no answer".into()))))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::scripts::Keys;
    use redis::cluster_routing::Slot;

    #[test]
    fn keys_share_the_room_hash_tag() {
        let keys = Keys {
            prefix: "presence".into(),
        };
        let room = RoomId::parse_or_lobby("team-1");
        let names = keys.room(&room);
        assert_eq!(names[0], "presence:{team-1}:online");
        let slot = key_slot(names[0].as_bytes());
        for name in names.iter().chain([&keys.channel(&room)]) {
            assert_eq!(key_slot(name.as_bytes()), slot, "{name}");
            assert_eq!(
                Slot::new(slot),
                Some(Slot::for_key(name)),
                "as the crate computes it"
            );
        }
        // Redis's own examples.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            keys.room_of_channel(keys.channel(&room).as_bytes()),
            Some(room)
        );
        assert_eq!(keys.room_of_channel(b"other:{team-1}:changed"), None);
    }
}
