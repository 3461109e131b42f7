//! The hub without sockets, on paused time: grace windows with the default timings and
//! the fan-out budget, exactly, in no real time at all.

use std::sync::Arc;
use std::time::Duration;

use herenow::config::Config;
use herenow::hub::{Hub, HubSettings, Leave, Membership};
use herenow::metrics::Metrics;
use herenow::outbox::{Next, Outbox};
use herenow::protocol::{Join, Proto, RawJson, Role, RoomId, ServerMsg, Status, UserHints};
use herenow::store::memory::MemoryStore;

fn hub() -> Arc<Hub> {
    hub_with(HubSettings::from_config(&Config::defaults()))
}

fn hub_with(settings: HubSettings) -> Arc<Hub> {
    let config = Config::defaults();
    let store = Arc::new(MemoryStore::new("solo".into(), config.stale()));
    Hub::new(store, settings, Arc::new(Metrics::default()))
}

fn join_msg(id: &str) -> Join {
    Join {
        id: id.into(),
        tab: id.into(),
        proto: Proto::V2,
        role: Role::Member,
        user: UserHints::default(),
        state: RawJson::empty_object(),
        verified: None,
        status: Status::Active,
        location: None,
    }
}

async fn join(hub: &Arc<Hub>, id: &str) -> (Membership, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(1 << 20));
    let room = RoomId::parse_or_lobby("r");
    let m = hub.join(&room, join_msg(id), outbox.clone()).await.unwrap();
    (m, outbox)
}

/// What the writer would take from `outbox` right now, decoded, without letting the
/// (paused) clock move.
async fn take_now(outbox: &Outbox) -> Vec<ServerMsg> {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let mut out = Vec::new();
    while let Some(Next::Frames(frames)) = futures_util::FutureExt::now_or_never(outbox.next()) {
        out.extend(
            frames
                .iter()
                .map(|f| serde_json::from_str::<ServerMsg>(&f.to_string()).unwrap()),
        );
    }
    out
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
async fn a_storm_goes_out_at_once_until_the_budget_is_spent_then_merges() {
    let mut settings = HubSettings::from_config(&Config::defaults());
    settings.broadcast_frames = 100;
    let hub = hub_with(settings);
    let (_watcher, seen) = join(&hub, "watcher").await;
    drain(&seen).await;
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(join(&hub, &format!("m{i}")).await);
    }
    // Time stands still, so everything falls in one interval. The watcher's snapshot
    // and, for the k-th join, its snapshot and a diff to the k sockets before it: after
    // 12 joins 91 frames are written, the 13th takes it past 100, and from the 14th on
    // the room merges.
    let now = drain(&seen).await;
    assert_eq!(now.len(), 13, "at once while the instance has budget");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let merged = drain(&seen).await;
    assert_eq!(
        merged.len(),
        1,
        "one merged broadcast at the interval's end"
    );
    let ServerMsg::Diff(d) = &merged[0] else {
        panic!("{merged:?}")
    };
    assert_eq!(d.joined.len(), 17);
    // A quiet interval later, a change goes out at once again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    members.push(join(&hub, "late").await);
    assert_eq!(drain(&seen).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_default_budget_sends_a_meeting_start_at_once() {
    // A hundred people joining one room within an instant: 5,150 frames, about the
    // default budget, so all but the last few go out at once.
    let hub = hub();
    let (_watcher, seen) = join(&hub, "watcher").await;
    drain(&seen).await;
    let mut members = Vec::new();
    for i in 0..90 {
        members.push(join(&hub, &format!("m{i}")).await);
    }
    assert_eq!(drain(&seen).await.len(), 90);
}

#[tokio::test(start_paused = true)]
async fn a_socket_that_joins_while_its_room_merges_gets_one_full_roster() {
    // Served at once, a joiner would hold a version inside the merged diff's span and
    // need a second full roster when the diff goes out: in a room of thousands, a
    // megabyte twice per join.
    let mut settings = HubSettings::from_config(&Config::defaults());
    settings.broadcast_frames = 100;
    let hub = hub_with(settings);
    let mut members = Vec::new();
    let mut got: Vec<Vec<ServerMsg>> = Vec::new();
    for i in 0..30 {
        members.push(join(&hub, &format!("m{i}")).await);
        got.push(Vec::new());
        // Every socket's writer takes what is queued, as it would between two joins.
        for (k, (_, outbox)) in members.iter().enumerate() {
            got[k].extend(take_now(outbox).await);
        }
    }
    // m0..m13 spend the budget (as in the storm above); the rest join a merging room,
    // and get their first roster with its merged flush.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (k, (_, outbox)) in members.iter().enumerate() {
        got[k].extend(take_now(outbox).await);
    }
    for (k, msgs) in got.iter().enumerate().skip(15) {
        assert!(
            matches!(&msgs[..], [ServerMsg::Presence(p)] if p.count == 30),
            "m{k}: {msgs:?}"
        );
    }
}
