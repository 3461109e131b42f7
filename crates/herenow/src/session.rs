//! One socket, from upgrade to leave, as one task: a reader (hello, messages, rate
//! limit, liveness, typing expiry) and a writer (the outbox and protocol pings) running
//! side by side. The socket's place in the room is a [`Membership`] guard owned by the
//! reader: however the task ends, dropping it leaves the room.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{sleep_until, Instant};

use crate::auth::{Admission, AuthError, AuthMode, Authenticator, Identity, VERIFIED_PREFIX};
use crate::config::Config;
use crate::hub::{Hub, Leave, Membership};
use crate::metrics::Metrics;
use crate::outbox::{Kind, Next, Outbox};
use crate::protocol::close::{self, ServerClose};
use crate::protocol::{
    decode, encode, location, state_json, ClientMsg, ErrorCode, OutEvent, Proto, RawJson,
    Rejection, Role, RoomId, ServerMsg, TYPING_EVENT,
};
use crate::rate::TokenBucket;
use crate::ws::{self, CloseCode, CloseFrame, Message, Socket, Utf8Bytes};

/// How long a write to a socket may block before the peer counts as gone: a client that
/// stopped reading must not hold its task (and outbox) forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the close frame may take once the session decided to close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The session's share of the configuration.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub hello_timeout: Duration,
    pub stale: Duration,
    pub ping: Duration,
    pub typing_timeout: Duration,
    pub max_frame_bytes: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    pub outbox_bytes: usize,
}

impl SessionSettings {
    pub fn from_config(c: &Config) -> SessionSettings {
        SessionSettings {
            hello_timeout: c.hello_timeout(),
            stale: c.stale(),
            ping: c.ping(),
            typing_timeout: c.typing_timeout(),
            max_frame_bytes: c.max_frame_bytes,
            rate_per_sec: c.rate_per_sec,
            rate_burst: c.rate_burst,
            outbox_bytes: c.outbox_bytes,
        }
    }
}

/// A message the session refuses: answered with an error, and maybe the socket closed.
enum Refusal {
    /// The socket stays open.
    Stay(Rejection),
    /// The error, then the socket closes.
    Close(Rejection, ServerClose),
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Refusal {
        Refusal::Stay(r)
    }
}

impl From<AuthError> for Refusal {
    fn from(err: AuthError) -> Refusal {
        match err.close() {
            Some(close) => Refusal::Close(err.rejection(), close),
            None => Refusal::Stay(err.rejection()),
        }
    }
}

/// Why the reader stopped.
enum Exit {
    /// The client closed, or the connection dropped: leave as `Leave` says.
    Gone(Leave),
    /// The server closes the socket as this says.
    Close(ServerClose, Leave),
}

/// Counts the open socket for as long as the session runs.
struct SocketGauge(Arc<Metrics>);

impl SocketGauge {
    fn new(metrics: &Arc<Metrics>) -> SocketGauge {
        metrics.sockets.fetch_add(1, Relaxed);
        SocketGauge(metrics.clone())
    }
}

impl Drop for SocketGauge {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Relaxed);
    }
}

/// Serve one upgraded socket in `room` until it closes.
///
/// Not an `async fn`: its arguments would live in the task for as long as it runs, and
/// the socket is a few hundred bytes that `split` moves to the heap at once.
///
/// `url_token` is the `?token=` of the upgrade URL, used when the hello brings none.
pub fn run(
    socket: Socket,
    hub: Arc<Hub>,
    room: RoomId,
    settings: Arc<SessionSettings>,
    auth: Arc<Authenticator>,
    url_token: Option<Box<str>>,
) -> impl std::future::Future<Output = ()> {
    let (sink, stream) = socket.split();
    serve(sink, stream, hub, room, settings, auth, url_token)
}

async fn serve(
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    hub: Arc<Hub>,
    room: RoomId,
    settings: Arc<SessionSettings>,
    auth: Arc<Authenticator>,
    url_token: Option<Box<str>>,
) {
    let _gauge = SocketGauge::new(hub.metrics());
    let metrics = hub.metrics().clone();
    let outbox = Arc::new(Outbox::new(settings.outbox_bytes));
    let mut reader = Reader {
        metrics: hub.metrics().clone(),
        hub,
        room,
        outbox: outbox.clone(),
        bucket: TokenBucket::new(settings.rate_per_sec, settings.rate_burst, Instant::now()),
        settings,
        membership: None,
        rejected: 0,
        last_rejection: None,
        typing_until: None,
        last_inbound: Instant::now(),
        auth,
        url_token,
        identity: None,
    };
    let mut stream = stream;
    let writer = write_loop(sink, &outbox, reader.settings.ping, &metrics);
    tokio::pin!(writer);
    let exit = tokio::select! {
        // The writer ends when the peer is gone or the outbox closed the socket (1013
        // too slow, 1012 restart): the client will be back, or is gone.
        () = &mut writer => Exit::Gone(Leave::Grace),
        exit = reader.read(&mut stream) => exit,
    };
    // The paths below run once per socket: boxed, they cost nothing while it idles.
    let leave = match exit {
        Exit::Gone(leave) => leave,
        Exit::Close(why, leave) => {
            outbox.close(why);
            Box::pin(closing_handshake(writer, stream)).await;
            leave
        }
    };
    tracing::debug!(?leave, "socket closed");
    Box::pin(reader.finish(leave)).await;
}

/// Send our close (queued in the outbox), then read and discard until the client's.
/// Dropping a socket with unread input resets it, and the client would see 1006 instead
/// of our code.
async fn closing_handshake(
    writer: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    mut stream: SplitStream<Socket>,
) {
    let drain = async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { tokio::join!(writer, drain) }).await;
}

/// Writes what the outbox hands over, and protocol pings. Every server close passes
/// here, whoever decided it, so this is where closes are counted.
async fn write_loop(
    mut sink: SplitSink<Socket, Message>,
    outbox: &Outbox,
    ping: Duration,
    metrics: &Metrics,
) {
    let mut pings = tokio::time::interval_at(Instant::now() + ping, ping);
    loop {
        // The writes are boxed: an idle socket's task holds only the two waits.
        tokio::select! {
            next = outbox.next() => match next {
                Next::Frames(frames) => {
                    let send = async {
                        for text in frames {
                            for message in text.into_messages() {
                                sink.feed(message).await?;
                            }
                        }
                        sink.flush().await
                    };
                    if !matches!(Box::pin(tokio::time::timeout(WRITE_TIMEOUT, send)).await, Ok(Ok(()))) {
                        return;
                    }
                }
                Next::Close(why) => {
                    metrics.closed(why);
                    let frame = CloseFrame { code: CloseCode::from(why.code()), reason: Utf8Bytes::from_static(why.reason()) };
                    let close = sink.send(Message::Close(Some(frame)));
                    let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, close)).await;
                    return;
                }
            },
            _ = pings.tick() => {
                let ping = sink.send(Message::Ping(Default::default()));
                if !matches!(Box::pin(tokio::time::timeout(WRITE_TIMEOUT, ping)).await, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

struct Reader {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    room: RoomId,
    settings: Arc<SessionSettings>,
    outbox: Arc<Outbox>,
    membership: Option<Membership>,
    bucket: TokenBucket,
    /// Messages refused by the rate limit in the current episode.
    rejected: u32,
    last_rejection: Option<Instant>,
    /// When this socket's typing signal expires, while it is typing.
    typing_until: Option<Instant>,
    last_inbound: Instant,
    auth: Arc<Authenticator>,
    /// `?token=` from the upgrade URL, until the hello takes it.
    url_token: Option<Box<str>>,
    /// The verified user of this socket and when its token runs out (leeway included).
    identity: Option<Box<(Identity, Instant)>>,
}

impl Reader {
    async fn read(&mut self, stream: &mut SplitStream<Socket>) -> Exit {
        let hello_deadline = Instant::now() + self.settings.hello_timeout;
        loop {
            let stale_at = self.last_inbound + self.settings.stale;
            let deadline = match self.membership {
                None => stale_at.min(hello_deadline),
                Some(_) => stale_at,
            };
            let typing_at = self.typing_until;
            let expires_at = self.identity.as_ref().map(|i| i.1);
            tokio::select! {
                frame = stream.next() => {
                    let Some(frame) = frame else {
                        return Exit::Gone(Leave::Grace);
                    };
                    let frame = match frame {
                        Ok(frame) => frame,
                        Err(err) if is_too_big(&err) => return too_big(),
                        Err(_) => return Exit::Gone(Leave::Grace),
                    };
                    self.last_inbound = Instant::now();
                    match frame {
                        Message::Text(text) => {
                            if text.len() > self.settings.max_frame_bytes {
                                return too_big();
                            }
                            // Boxed: a socket's task stays small while it waits for
                            // frames; the handling of one lives only as long as it runs.
                            if let Some(exit) = Box::pin(self.on_text(&text)).await {
                                return exit;
                            }
                        }
                        Message::Binary(bytes) => {
                            if bytes.len() > self.settings.max_frame_bytes {
                                return too_big();
                            }
                            self.reject(&Rejection::new(ErrorCode::BadMessage, "frames must be JSON text"));
                        }
                        Message::Close(frame) => {
                            // 1000 from the client means "leave now"; anything else may be
                            // a reload or a blip, so the tab keeps its place for a while.
                            let leave = match frame {
                                Some(f) if u16::from(f.code) == close::NORMAL => Leave::Now,
                                _ => Leave::Grace,
                            };
                            return Exit::Gone(leave);
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                () = sleep_until(deadline) => {
                    return if self.membership.is_none() && Instant::now() >= hello_deadline {
                        Exit::Close(ServerClose::NoHello, Leave::Now)
                    } else {
                        Exit::Close(ServerClose::Stale, Leave::Now)
                    };
                }
                () = sleep_until(typing_at.unwrap_or(deadline)), if typing_at.is_some() => {
                    self.typing_until = None;
                    Box::pin(self.send_typing(false)).await;
                }
                () = sleep_until(expires_at.unwrap_or(deadline)), if expires_at.is_some() => {
                    // No refresh came in time: the token's holder is no longer vouched for.
                    self.reject(&AuthError::Expired.rejection());
                    return Exit::Close(ServerClose::Unauthorized, Leave::Now);
                }
            }
        }
    }

    fn reject(&self, rejection: &Rejection) {
        self.metrics.error(rejection.code);
        self.outbox
            .push(encode(&rejection.to_msg()).into(), Kind::Other);
    }

    /// Handle one text frame; `Some` ends the session.
    async fn on_text(&mut self, text: &str) -> Option<Exit> {
        self.metrics.messages_in.fetch_add(1, Relaxed);
        let now = Instant::now();
        if !self.bucket.try_take(now) {
            self.rejected += 1;
            self.last_rejection = Some(now);
            if self.rejected == 1 {
                self.reject(&Rejection::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} messages a second; slow down or be disconnected",
                        self.settings.rate_per_sec
                    ),
                ));
            }
            if self.rejected > self.settings.rate_burst {
                return Some(Exit::Close(ServerClose::RateLimited, Leave::Now));
            }
            return None;
        }
        // A second without refusals ends the episode.
        if self
            .last_rejection
            .is_some_and(|t| now - t >= Duration::from_secs(1))
        {
            self.rejected = 0;
            self.last_rejection = None;
        }
        let msg = match decode(text) {
            Ok(msg) => msg,
            Err(rejection) => {
                self.reject(&rejection);
                return None;
            }
        };
        match self.on_msg(msg).await {
            Ok(()) => None,
            Err(Refusal::Stay(rejection)) => {
                self.reject(&rejection);
                None
            }
            Err(Refusal::Close(rejection, why)) => {
                self.reject(&rejection);
                Some(Exit::Close(why, Leave::Now))
            }
        }
    }

    async fn on_msg(&mut self, msg: ClientMsg) -> Result<(), Refusal> {
        let not_joined = || Rejection::new(ErrorCode::NotJoined, "send hello first");
        match msg {
            ClientMsg::Hello(mut hello) => {
                if self.membership.is_some() {
                    return Err(Rejection::new(
                        ErrorCode::AlreadyJoined,
                        "this socket has joined already",
                    )
                    .into());
                }
                let token = hello.token.take().map(String::into_boxed_str);
                let mut join = hello.validate()?;
                let token = token.or_else(|| self.url_token.take());
                match self.auth.admit(token.as_deref(), &self.room).await? {
                    Admission::Verified(identity) => {
                        // The token says who this is: its id, display and role; the
                        // hello's id stays the tab's key.
                        join.id = identity.id.clone();
                        join.user = identity.user.clone();
                        join.role = identity.role;
                        join.verified = Some(true);
                        let expires = Instant::now() + self.auth.time_left(&identity);
                        self.identity = Some(Box::new((identity, expires)));
                    }
                    Admission::Anonymous if join.id.starts_with(VERIFIED_PREFIX) => {
                        return Err(Rejection::new(
                            ErrorCode::InvalidId,
                            "ids starting with u_ are reserved for verified users",
                        )
                        .into());
                    }
                    Admission::Anonymous => {
                        join.verified = (self.auth.mode() != AuthMode::Off).then_some(false);
                    }
                }
                self.url_token = None;
                tracing::Span::current().record("id", &*join.id);
                let membership = match self.hub.join(&self.room, join, self.outbox.clone()).await {
                    Ok(m) => m,
                    Err(r) if r.code == ErrorCode::RoomFull => {
                        self.identity = None;
                        return Err(Refusal::Close(r, ServerClose::RoomFull));
                    }
                    Err(r) => {
                        self.identity = None;
                        return Err(r.into());
                    }
                };
                tracing::debug!(proto = ?membership.proto(), "joined");
                self.membership = Some(membership);
            }
            ClientMsg::Ping => {
                if self
                    .membership
                    .as_ref()
                    .is_some_and(|m| m.proto() == Proto::V2)
                {
                    self.outbox
                        .push(encode(&ServerMsg::Pong).into(), Kind::Other);
                }
            }
            ClientMsg::State(update) => {
                let m = self.membership.as_ref().ok_or_else(not_joined)?;
                if m.role() == Role::Viewer {
                    return Err(viewer_refusal("state").into());
                }
                if update.state.is_none() && update.user.is_none() {
                    return Err(Rejection::new(
                        ErrorCode::BadMessage,
                        "state needs a state object or user hints",
                    )
                    .into());
                }
                let state = update.state.as_ref().map(state_json).transpose()?;
                let user = update.user.map(|u| u.validate()).transpose()?;
                // A verified user's display comes from the token alone.
                let user = user.filter(|_| self.identity.is_none());
                m.update(user, state).await;
            }
            ClientMsg::Event(event) => {
                let m = self.membership.as_ref().ok_or_else(not_joined)?;
                if m.role() == Role::Viewer {
                    return Err(viewer_refusal("events (typing included)").into());
                }
                let event = event.validate()?;
                if let Some(typing) = event.typing {
                    self.typing_until =
                        typing.then(|| Instant::now() + self.settings.typing_timeout);
                }
                self.membership
                    .as_ref()
                    .ok_or_else(not_joined)?
                    .publish(event)
                    .await;
            }
            ClientMsg::Sync => {
                self.membership
                    .as_ref()
                    .ok_or_else(not_joined)?
                    .resend_snapshot();
            }
            ClientMsg::Auth(refresh) => {
                let m = self.membership.as_ref().ok_or_else(not_joined)?;
                let Some(current) = self.identity.as_ref() else {
                    return Err(Rejection::new(
                        ErrorCode::InvalidToken,
                        "this socket joined without a token; reconnect with one",
                    )
                    .into());
                };
                // A refresh that fails is answered, and the current token stays in force
                // until it runs out: only a room no longer allowed ends the socket now.
                let fresh = self
                    .auth
                    .verify(&refresh.token)
                    .await
                    .map_err(|e| Refusal::Stay(e.rejection()))?;
                if fresh.id != current.0.id || fresh.role != current.0.role {
                    return Err(Rejection::new(
                        ErrorCode::InvalidToken,
                        "a refreshed token must name the same user with the same role",
                    )
                    .into());
                }
                self.auth.check_room(&fresh, &self.room)?;
                let display_changed = fresh.user != current.0.user;
                let user = fresh.user.clone();
                let expires = Instant::now() + self.auth.time_left(&fresh);
                self.identity = Some(Box::new((fresh, expires)));
                if display_changed {
                    m.update(Some(user), None).await;
                }
            }
            ClientMsg::Status(update) => {
                let m = self.membership.as_ref().ok_or_else(not_joined)?;
                m.set_status(update.status).await;
            }
            ClientMsg::Location(update) => {
                let m = self.membership.as_ref().ok_or_else(not_joined)?;
                m.set_location(location(update.location)?).await;
            }
        }
        Ok(())
    }

    async fn send_typing(&self, typing: bool) {
        if let Some(m) = &self.membership {
            let data = RawJson::from_value(&serde_json::json!({ "typing": typing }));
            m.publish(OutEvent {
                event: TYPING_EVENT.into(),
                data,
                typing: Some(typing),
            })
            .await;
        }
    }

    /// Withdraw a typing signal, then leave the room as `leave` says.
    async fn finish(mut self, leave: Leave) {
        if self.typing_until.take().is_some() {
            self.send_typing(false).await;
        }
        if let Some(mut m) = self.membership.take() {
            m.set_leave(leave);
        }
    }
}

/// A viewer watches the room: it has no presence to change and no voice in it.
fn viewer_refusal(what: &str) -> Rejection {
    Rejection::new(ErrorCode::Forbidden, format!("viewers may not send {what}"))
}

fn too_big() -> Exit {
    Exit::Close(ServerClose::TooBig, Leave::Now)
}

/// Did the WebSocket layer refuse a frame over its (hard) size limit?
fn is_too_big(err: &ws::Error) -> bool {
    matches!(err, ws::Error::Capacity(_))
}
