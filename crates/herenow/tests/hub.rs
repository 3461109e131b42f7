//! The hub without sockets, on paused time: grace windows and broadcast throttling with
//! the default timings, exactly, in no real time at all.

use std::sync::Arc;
use std::time::Duration;

use herenow::config::Config;
use herenow::hub::{Hub, HubSettings, Leave, Membership};
use herenow::metrics::Metrics;
use herenow::outbox::{Next, Outbox};
use herenow::protocol::{Join, Proto, RawJson, RoomId, ServerMsg, UserHints};
use herenow::store::memory::MemoryStore;

fn hub() -> Arc<Hub> {
    let config = Config::defaults();
    let store = Arc::new(MemoryStore::new("solo".into(), config.stale()));
    Hub::new(
        store,
        HubSettings::from_config(&config),
        Arc::new(Metrics::default()),
    )
}

fn join_msg(id: &str) -> Join {
    Join {
        id: id.into(),
        proto: Proto::V2,
        user: UserHints::default(),
        state: RawJson::empty_object(),
    }
}

async fn join(hub: &Arc<Hub>, id: &str) -> (Membership, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let room = RoomId::parse_or_lobby("r");
    let m = hub.join(&room, join_msg(id), outbox.clone()).await.unwrap();
    (m, outbox)
}

/// Everything queued on `outbox` right now, decoded.
async fn drain(outbox: &Outbox) -> Vec<ServerMsg> {
    // Let spawned tasks (timers, writes) run first.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let mut out = Vec::new();
    while let Ok(next) = tokio::time::timeout(Duration::from_millis(1), outbox.next()).await {
        match next {
            Next::Frames(frames) => out.extend(
                frames
                    .iter()
                    .map(|f| serde_json::from_str(&f.to_string()).unwrap()),
            ),
            Next::Close(..) => break,
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_default_grace_window_hides_a_reload_and_then_lets_go() {
    let hub = hub();
    let (_watcher, seen) = join(&hub, "watcher").await;
    assert!(matches!(&drain(&seen).await[..], [ServerMsg::Presence(p)] if p.count == 1));
    let (tab, _) = join(&hub, "tab").await;
    let msgs = drain(&seen).await;
    assert!(
        matches!(msgs.last(), Some(ServerMsg::Diff(d)) if d.joined.len() == 1),
        "{msgs:?}"
    );

    // Closed without 1000, back 2.9 s later: nothing at all for the others.
    drop(tab);
    tokio::time::sleep(Duration::from_millis(2_900)).await;
    let (tab, _) = join(&hub, "tab").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(drain(&seen).await.is_empty());

    // Gone for good: the leave goes out when the 3 s window ends, not before.
    drop(tab);
    tokio::time::sleep(Duration::from_millis(2_990)).await;
    assert!(drain(&seen).await.is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let msgs = drain(&seen).await;
    assert!(
        matches!(&msgs[..], [ServerMsg::Diff(d)] if d.left.len() == 1),
        "{msgs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn leave_now_skips_the_grace_window() {
    let hub = hub();
    let (_watcher, seen) = join(&hub, "watcher").await;
    let (mut tab, _) = join(&hub, "tab").await;
    drain(&seen).await;
    tab.set_leave(Leave::Now);
    drop(tab);
    let msgs = drain(&seen).await;
    assert!(
        matches!(&msgs[..], [ServerMsg::Diff(d)] if d.left.len() == 1),
        "{msgs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_storm_goes_out_as_ten_broadcasts_then_one_per_interval() {
    let hub = hub();
    let (_watcher, seen) = join(&hub, "watcher").await;
    drain(&seen).await;
    let mut members = Vec::new();
    for i in 0..100 {
        members.push(join(&hub, &format!("m{i}")).await);
    }
    // Time stands still: the first ten changes went out at once, the rest wait.
    let now = drain(&seen).await;
    assert_eq!(now.len(), 10, "burst");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let merged = drain(&seen).await;
    assert_eq!(merged.len(), 1, "one merged broadcast per interval");
    let ServerMsg::Diff(d) = &merged[0] else {
        panic!("{merged:?}")
    };
    assert_eq!(d.joined.len(), 90);
    // A quiet interval later, a change goes out at once again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    members.push(join(&hub, "late").await);
    assert_eq!(drain(&seen).await.len(), 1);
}
