//! Benchmark clients: one task per WebSocket that keeps reading (so protocol pings are
//! answered), folds every frame into a [`Roster`] and stamps when its member set last
//! changed. Scenarios compare those stamps with the moment they acted.

use crate::wire::{self, Roster, SetKey};
use crate::ws::{self, op, Next};
use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, Notify, Semaphore};

/// Loopback source addresses client sockets are spread over, so that one address's
/// ephemeral port range never limits the connection count.
pub const SOURCE_ADDRS: u8 = 8;

/// The source address for the n-th connection: 127.0.0.2, 127.0.0.3, ...
pub fn source_addr(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (n % usize::from(SOURCE_ADDRS)) as u8,
    ))
}

/// What one client has seen, behind a mutex its task holds only per frame.
#[derive(Debug, Clone, Default)]
pub struct ClientState {
    pub roster: Roster,
    /// When the member set last changed (or the first roster arrived).
    pub changed_at: Option<Instant>,
    /// When the first roster after the hello arrived.
    pub first_at: Option<Instant>,
    /// When the watched member's state last changed.
    pub watch_at: Option<Instant>,
    /// Text frames and their payload bytes.
    pub frames: u64,
    pub bytes: u64,
    /// Payload bytes of the first roster (the joiner's own snapshot), and its size.
    pub first_bytes: u64,
    pub first_count: u32,
    /// Payload bytes of the last full roster.
    pub last_snapshot_bytes: u64,
    /// Full rosters received, and their payload bytes.
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    /// Protocol-level pings from the server.
    pub pings: u64,
    pub syncs_sent: u64,
    /// The socket is gone, and whether the server ended it first.
    pub closed: bool,
    pub closed_by_server: bool,
    pub close_code: Option<u16>,
}

/// Commands a scenario sends to a client task.
#[derive(Debug)]
enum Cmd {
    Text(String),
    /// Close with this code and wait for the server's close.
    Close(u16),
    /// Drop the TCP connection without a close frame (abnormal closure).
    Abort,
    /// Write what a direct write left over.
    Flush,
}

/// Shared between all clients of a scenario: a change counter and a wake-up for waiters.
#[derive(Debug, Default)]
pub struct Signal {
    pub notify: Notify,
    pub changes: AtomicU64,
    /// Clients that have received their first roster.
    pub firsts: AtomicU64,
}

/// A connected client.
pub struct Client {
    pub id: String,
    pub room: usize,
    pub instance: usize,
    pub proto: u8,
    pub state: Arc<Mutex<ClientState>>,
    /// Bytes read from the socket: HTTP upgrade, WebSocket framing, pings and payload.
    pub wire_rx: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<Cmd>,
    /// Shared with the client's task, so that `send_now` can write without waiting for
    /// the task to be scheduled.
    writer: SharedWriter,
    /// Signalled once, when the first roster arrives or the socket ends before it.
    first: Arc<Notify>,
}

/// A client's write half, shared between its task and `Client::send_now`; the task
/// takes it away when it ends.
#[derive(Clone)]
struct SharedWriter(Arc<tokio::sync::Mutex<Option<ws::Writer>>>);

impl SharedWriter {
    async fn send(&self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        match self.0.lock().await.as_mut() {
            Some(w) => w.send(opcode, payload).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn close(&self, code: u16) -> std::io::Result<()> {
        match self.0.lock().await.as_mut() {
            Some(w) => w.close(code).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn flush_pending(&self) -> std::io::Result<()> {
        match self.0.lock().await.as_mut() {
            Some(w) => w.flush_pending().await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

/// Where and how to connect one client.
#[derive(Debug, Clone)]
pub struct Spec {
    pub server: SocketAddr,
    pub room_name: String,
    pub room: usize,
    pub instance: usize,
    pub id: String,
    pub proto: u8,
    pub watch: Option<String>,
    pub source: IpAddr,
}

impl Client {
    /// Opens the WebSocket (no hello yet) and starts its reader task.
    pub async fn connect(spec: Spec, signal: Arc<Signal>) -> Result<Client> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(spec.source, 0))?;
        let stream = socket
            .connect(spec.server)
            .await
            .with_context(|| format!("TCP connect from {}", spec.source))?;
        stream.set_nodelay(true)?;
        let wire_rx = Arc::new(AtomicU64::new(0));
        let path = format!("/server/ws/{}", spec.room_name);
        let (reader, writer) =
            ws::handshake(stream, &spec.server.to_string(), &path, wire_rx.clone())
                .await
                .context("WebSocket handshake")?;
        let state = Arc::new(Mutex::new(ClientState {
            roster: Roster::new(spec.proto, spec.watch.as_deref()),
            ..ClientState::default()
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let first = Arc::new(Notify::new());
        let writer = SharedWriter(Arc::new(tokio::sync::Mutex::new(Some(writer))));
        tokio::spawn(run(
            reader,
            writer.clone(),
            rx,
            state.clone(),
            signal,
            first.clone(),
        ));
        Ok(Client {
            id: spec.id,
            room: spec.room,
            instance: spec.instance,
            proto: spec.proto,
            state,
            wire_rx,
            tx,
            writer,
            first,
        })
    }

    /// Sends the hello; returns the moment just before it was queued.
    pub fn hello(&self) -> Instant {
        let t = Instant::now();
        self.send(wire::hello(&self.id, self.proto));
        t
    }

    /// Sends the hello from the caller, at once, when the socket takes it (else through
    /// the task, as `hello`): a paced stream of hellos keeps its pace however busy the
    /// clients' tasks are with reading.
    pub fn hello_now(&self) -> Instant {
        let t = Instant::now();
        self.send_now(wire::hello(&self.id, self.proto));
        t
    }

    /// Sends a text frame from the caller (any thread), at once when the socket takes
    /// it, else through the client's task.
    pub fn send_now(&self, text: String) {
        if let Ok(mut guard) = self.writer.0.try_lock() {
            let Some(w) = guard.as_mut() else {
                return; // the socket is gone
            };
            if w.try_send(op::TEXT, text.as_bytes()) {
                if w.has_pending() {
                    let _ = self.tx.send(Cmd::Flush);
                }
                return;
            }
        }
        self.send(text);
    }

    pub fn send(&self, text: String) {
        let _ = self.tx.send(Cmd::Text(text));
    }

    /// A clean leave: close code 1000.
    pub fn close(&self) {
        let _ = self.tx.send(Cmd::Close(1000));
    }

    /// An abnormal leave: the TCP connection goes without a close frame.
    pub fn abort(&self) {
        let _ = self.tx.send(Cmd::Abort);
    }

    pub fn snapshot(&self) -> ClientState {
        self.state.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) for the first roster after the hello; false when it did
    /// not come (the socket ended first, or time ran out). Without a wake-up for every
    /// frame of every client, unlike the `Signal` waits.
    pub async fn first_roster(&self, timeout: Duration) -> bool {
        if self.state.lock().unwrap().first_at.is_some() {
            return true;
        }
        let _ = tokio::time::timeout(timeout, self.first.notified()).await;
        self.state.lock().unwrap().first_at.is_some()
    }

    /// The member set this client holds, if it holds one.
    pub fn set(&self) -> Option<SetKey> {
        let s = self.state.lock().unwrap();
        s.roster.have.then_some(s.roster.set)
    }
}

/// How long a client waits for the server's close after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// One client's task: handles every complete frame read so far, then waits for more
/// bytes or a command. Frames are stamped when they are handled, right after they are
/// read.
async fn run(
    mut reader: ws::Reader,
    writer: SharedWriter,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    state: Arc<Mutex<ClientState>>,
    signal: Arc<Signal>,
    first: Arc<Notify>,
) {
    let mut waiting_first = true;
    let mut closing: Option<tokio::time::Instant> = None;
    let server_ended = |state: &Mutex<ClientState>, closing: bool| {
        if !closing {
            state.lock().unwrap().closed_by_server = true;
        }
    };
    'task: loop {
        loop {
            let next = match reader.next() {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(_) => {
                    server_ended(&state, closing.is_some());
                    break 'task;
                }
            };
            match next {
                Next::Message(op::TEXT) => {
                    let sync = on_text(&state, reader.payload());
                    if waiting_first && state.lock().unwrap().first_at.is_some() {
                        waiting_first = false;
                        signal.firsts.fetch_add(1, Ordering::Relaxed);
                        // Stores a permit when nobody waits yet: no wake-up is lost.
                        first.notify_one();
                    }
                    signal.changes.fetch_add(1, Ordering::Relaxed);
                    signal.notify.notify_waiters();
                    if sync && writer.send(op::TEXT, wire::SYNC.as_bytes()).await.is_err() {
                        break 'task;
                    }
                }
                Next::Message(_) => {}
                Next::Control(op::PING) => {
                    state.lock().unwrap().pings += 1;
                    let payload = reader.payload().to_vec();
                    if writer.send(op::PONG, &payload).await.is_err() {
                        break 'task;
                    }
                }
                Next::Control(op::CLOSE) => {
                    let code = ws::close_code(reader.payload());
                    {
                        let mut s = state.lock().unwrap();
                        s.close_code = code;
                        s.closed_by_server = closing.is_none();
                    }
                    if closing.is_none() {
                        // Echo it, as the protocol asks, then go.
                        let _ = writer.close(code.unwrap_or(1000)).await;
                    }
                    break 'task;
                }
                Next::Control(_) => {}
            }
        }
        let close_deadline =
            closing.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            cmd = rx.recv(), if closing.is_none() => match cmd {
                Some(Cmd::Text(t)) => {
                    if writer.send(op::TEXT, t.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Close(code)) => {
                    let _ = writer.close(code).await;
                    closing = Some(tokio::time::Instant::now() + CLOSE_WAIT);
                }
                Some(Cmd::Flush) => {
                    if writer.flush_pending().await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Abort) | None => break,
            },
            n = reader.fill() => {
                if !matches!(n, Ok(n) if n > 0) {
                    server_ended(&state, closing.is_some());
                    break;
                }
            }
            _ = tokio::time::sleep_until(close_deadline), if closing.is_some() => break,
        }
    }
    // The write half goes with the task: the socket closes (without a close frame
    // after an abort) even while the `Client` lives on.
    writer.0.lock().await.take();
    state.lock().unwrap().closed = true;
    first.notify_one();
    signal.changes.fetch_add(1, Ordering::Relaxed);
    signal.notify.notify_waiters();
}

/// Folds one frame in; true when a `sync` must be sent.
fn on_text(state: &Mutex<ClientState>, payload: &[u8]) -> bool {
    let now = Instant::now();
    let mut s = state.lock().unwrap();
    s.frames += 1;
    s.bytes += payload.len() as u64;
    let Ok(text) = std::str::from_utf8(payload) else {
        s.roster.anomalies.malformed += 1;
        return false;
    };
    let a = s.roster.apply_text(text);
    if a.snapshot {
        s.snapshots += 1;
        s.snapshot_bytes += text.len() as u64;
        s.last_snapshot_bytes = text.len() as u64;
        if s.first_at.is_none() {
            s.first_at = Some(now);
            s.first_bytes = text.len() as u64;
            s.first_count = s.roster.set.count;
        }
    }
    if a.set_changed {
        s.changed_at = Some(now);
    }
    if a.watch_changed {
        s.watch_at = Some(now);
    }
    if a.send_sync {
        s.syncs_sent += 1;
    }
    a.send_sync
}

/// Connects many clients at once with at most `concurrency` handshakes in flight.
/// Returns the clients in `specs` order, or the first error and how many succeeded.
pub async fn connect_all(
    specs: Vec<Spec>,
    signal: Arc<Signal>,
    concurrency: usize,
) -> (Vec<Client>, Option<(usize, anyhow::Error)>) {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let n = specs.len();
    for (i, spec) in specs.into_iter().enumerate() {
        let sem = sem.clone();
        let signal = signal.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let r = tokio::time::timeout(Duration::from_secs(20), Client::connect(spec, signal))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("connect timed out after 20 s")));
            (i, r)
        });
    }
    let mut slots: Vec<Option<Client>> = (0..n).map(|_| None).collect();
    let mut first_err = None;
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, Ok(c))) => slots[i] = Some(c),
            Ok((i, Err(e))) => {
                if first_err.is_none() {
                    first_err = Some((i, e));
                }
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some((usize::MAX, anyhow::anyhow!("connect task: {e}")));
                }
            }
        }
    }
    let ok = slots.iter().filter(|s| s.is_some()).count();
    let clients = slots.into_iter().flatten().collect();
    (clients, first_err.map(|(_, e)| (ok, e)))
}

/// Waits until `check(i, state)` gives a stamp for every listed client, or `timeout`.
/// Returns each client's stamp (`None` for those still not done at the deadline).
/// Stamps are taken by the clients when frames arrive, so how often this rescans
/// does not change the figures.
pub async fn wait_until<F>(
    clients: &[&Client],
    signal: &Signal,
    timeout: Duration,
    check: F,
) -> Vec<Option<Instant>>
where
    F: Fn(usize, &ClientState) -> Option<Instant>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out: Vec<Option<Instant>> = vec![None; clients.len()];
    let mut pending: Vec<usize> = (0..clients.len()).collect();
    loop {
        let notified = signal.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        pending.retain(|&i| {
            let s = clients[i].state.lock().unwrap();
            match check(i, &s) {
                Some(t) => {
                    out[i] = Some(t);
                    false
                }
                None => true,
            }
        });
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return out;
        }
        tokio::select! {
            _ = &mut notified => {
                // Large waits rescan less often.
                if pending.len() > 1000 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Waits until client i holds the member set `keys[i]`; each stamp is when that
/// client's set last changed.
pub async fn wait_keyed(
    clients: &[&Client],
    signal: &Signal,
    keys: &[SetKey],
    timeout: Duration,
) -> Vec<Option<Instant>> {
    wait_until(clients, signal, timeout, |i, s| {
        (s.roster.have && s.roster.set == keys[i])
            .then(|| s.changed_at.unwrap_or_else(Instant::now))
    })
    .await
}

/// Bytes all these clients have read from their sockets.
pub fn wire_total(clients: &[&Client]) -> u64 {
    clients
        .iter()
        .map(|c| c.wire_rx.load(Ordering::Relaxed))
        .sum()
}

/// Sum of a counter over clients.
pub fn total(clients: &[&Client], f: impl Fn(&ClientState) -> u64) -> u64 {
    clients.iter().map(|c| f(&c.state.lock().unwrap())).sum()
}
