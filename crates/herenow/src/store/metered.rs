//! A store wrapped so that every call is timed and every failure counted: the one place
//! that measures the store. The hub and the REST roster talk to this, never to the bare
//! store, so no call can be left out of `herenow_store_seconds`.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{FeedReceiver, PresenceStore, StoreError, StoreEvent, StoreHealth};
use crate::metrics::Metrics;
use crate::protocol::{Id, RoomId};
use crate::room::{Change, Entry, InstanceId, RoomState};

/// `inner`, with its calls recorded in `metrics`.
pub struct MeteredStore {
    inner: Arc<dyn PresenceStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn PresenceStore>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics.store_call(started.elapsed());
        if result.is_err() {
            self.metrics.store_errors.fetch_add(1, Relaxed);
        }
        result
    }
}

#[async_trait]
impl PresenceStore for MeteredStore {
    fn instance(&self) -> &InstanceId {
        self.inner.instance()
    }

    fn take_feed(&self) -> Option<FeedReceiver> {
        self.inner.take_feed()
    }

    async fn write(
        &self,
        room: &RoomId,
        entries: &[(Id, Option<Entry>)],
    ) -> Result<Option<Change>, StoreError> {
        self.timed(self.inner.write(room, entries)).await
    }

    async fn register(
        &self,
        room: &RoomId,
        entries: &[(Id, Entry)],
    ) -> Result<Option<Change>, StoreError> {
        self.timed(self.inner.register(room, entries)).await
    }

    async fn snapshot(&self, room: &RoomId) -> Result<RoomState, StoreError> {
        self.timed(self.inner.snapshot(room)).await
    }

    async fn heartbeat(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, u64)>, StoreError> {
        self.timed(self.inner.heartbeat(rooms)).await
    }

    fn watch(&self, room: &RoomId) {
        self.inner.watch(room)
    }

    fn unwatch(&self, room: &RoomId) {
        self.inner.unwatch(room)
    }

    async fn publish(&self, room: &RoomId, event: &StoreEvent) -> Result<(), StoreError> {
        self.timed(self.inner.publish(room, event)).await
    }

    fn health(&self) -> StoreHealth {
        self.inner.health()
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::time::Duration;

    #[tokio::test]
    async fn every_call_is_timed() {
        let metrics = Arc::new(Metrics::default());
        let inner = Arc::new(MemoryStore::new("i".into(), Duration::from_secs(30)));
        let store = MeteredStore::new(inner, metrics.clone());
        let room = RoomId::parse_or_lobby("r");
        store.snapshot(&room).await.unwrap();
        store.remove(&room, &Id::from("x")).await.unwrap();
        store.heartbeat(std::slice::from_ref(&room)).await.unwrap();
        let text = metrics.render(0, 0, true);
        assert!(text.contains("herenow_store_seconds_count 3"), "{text}");
        assert!(text.contains("herenow_store_errors_total 0"));
    }
}
