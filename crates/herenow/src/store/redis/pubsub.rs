//! Pub/sub: one subscription per watched room (sharded on a cluster), carried out in
//! call order by one subscriber task, and the pushes Redis sends turned into the
//! [`Feed`]. Pub/sub delivers at most once and a new connection has no subscriptions:
//! after every (re)connection the subscriber tells the hub ([`Feed::Reconnected`]),
//! subscribes every watched room again and emits [`Feed::Resync`] for each.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use redis::{PushInfo, PushKind, RedisError, Value};
use tokio::sync::mpsc;

use super::link::Conn;
use super::scripts::Wire;
use super::{lock, Inner};
use crate::protocol::RoomId;
use crate::store::Feed;

/// Rooms subscribed at once after a reconnect (each with its own command).
const RESUBSCRIBE_CONCURRENCY: usize = 32;

/// Orders for the subscriber task, carried out in order.
pub(super) enum SubCmd {
    Watch(RoomId),
    Unwatch(RoomId),
    /// A (new) connection is up: tell the hub, then subscribe every watched room again.
    Recover,
}

impl Inner {
    fn is_watched(&self, room: &RoomId) -> bool {
        lock(&self.watched).contains(room)
    }

    async fn subscribe(&self, conn: &mut Conn, room: &RoomId) -> Result<(), RedisError> {
        let channel = self.keys.channel(room);
        match conn {
            Conn::Single(c) => c.subscribe(channel).await,
            Conn::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe(&self, conn: &mut Conn, room: &RoomId) -> Result<(), RedisError> {
        let channel = self.keys.channel(room);
        match conn {
            Conn::Single(c) => c.unsubscribe(channel).await,
            Conn::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// Carries out watch, unwatch and resubscription in call order. A failed
    /// subscription is left to the probe ([`Inner::call`] wakes it), whose recovery
    /// subscribes every watched room again.
    pub(super) async fn subscriber(self: Arc<Self>, mut orders: mpsc::UnboundedReceiver<SubCmd>) {
        while let Some(order) = orders.recv().await {
            match order {
                SubCmd::Watch(room) => {
                    // Not watched any more: its Unwatch follows. No link: recovery
                    // subscribes every watched room.
                    let Some(mut conn) = self.current().filter(|_| self.is_watched(&room)) else {
                        continue;
                    };
                    match self.call(self.subscribe(&mut conn, &room)).await {
                        Ok(()) => {
                            let _ = self.feed.send(Feed::Resync { room });
                        }
                        Err(err) => tracing::debug!(%room, %err, "subscribe failed; probing redis"),
                    }
                }
                SubCmd::Unwatch(room) => {
                    if self.is_watched(&room) {
                        continue;
                    }
                    if let Some(mut conn) = self.current() {
                        let _ = self.call(self.unsubscribe(&mut conn, &room)).await;
                    }
                }
                SubCmd::Recover => {
                    let _ = self.feed.send(Feed::Reconnected);
                    let Some(conn) = self.current() else {
                        continue;
                    };
                    let rooms: Vec<RoomId> = lock(&self.watched).iter().cloned().collect();
                    let this = &self;
                    let mut done = stream::iter(rooms)
                        .map(|room| {
                            let mut conn = conn.clone();
                            async move {
                                let out = this.call(this.subscribe(&mut conn, &room)).await;
                                (room, out)
                            }
                        })
                        .buffer_unordered(RESUBSCRIBE_CONCURRENCY);
                    while let Some((room, out)) = done.next().await {
                        match out {
                            Ok(()) if self.is_watched(&room) => {
                                let _ = self.feed.send(Feed::Resync { room });
                            }
                            Ok(()) => {}
                            Err(err) => {
                                tracing::debug!(%room, %err, "resubscribe failed; probing redis")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Turns pushes into the feed, and disconnections into a probe.
    pub(super) async fn receive(
        self: Arc<Self>,
        mut pushes: mpsc::UnboundedReceiver<(u64, PushInfo)>,
    ) {
        while let Some((epoch, push)) = pushes.recv().await {
            match push.kind {
                PushKind::Disconnection if epoch == lock(&self.link).epoch => {
                    self.lost.store(true, Ordering::SeqCst);
                    self.wake.notify_one();
                }
                PushKind::Message | PushKind::SMessage => self.deliver(push.data),
                _ => {}
            }
        }
    }

    fn deliver(&self, data: Vec<Value>) {
        let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..] else {
            return;
        };
        let Some(room) = self.keys.room_of_channel(channel) else {
            return;
        };
        if !self.is_watched(&room) {
            return;
        }
        match serde_json::from_slice::<Wire>(payload) {
            Ok(Wire::Change { change }) => {
                let _ = self.feed.send(Feed::Change { room, change });
            }
            Ok(Wire::Event { origin, event }) => {
                if origin != self.instance {
                    let _ = self.feed.send(Feed::Event { room, event });
                }
            }
            Err(err) => tracing::warn!(%room, %err, "undecodable message on a room channel"),
        }
    }
}
