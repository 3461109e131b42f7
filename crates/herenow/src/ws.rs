//! The WebSocket layer: the upgrade handshake (RFC 6455, section 4.2) on axum's own HTTP
//! connection, and outgoing text messages made of shared pieces, sent in fragments.
//!
//! We drive tokio-tungstenite ourselves rather than through axum's `ws` extractor for one
//! reason: fragments. tungstenite copies each outgoing frame into a per-socket buffer that
//! keeps its largest size for the socket's whole life, so a 1 MB snapshot of a
//! 10,000-member room, sent whole, would pin 1 MB on each of the room's sockets. Sent as
//! fragments of at most [`FRAGMENT_BYTES`], a message costs a socket at most that much; and
//! a roster serialised once for the room stays shared by every socket down to the write,
//! with only the socket's own ending (`"self"`) appended as the last fragment.

use std::ops::Range;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
pub use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::{Error, Message, Utf8Bytes};

/// An upgraded socket.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The largest fragment of an outgoing message, and so the most a large message leaves
/// in a socket's write buffer. Rosters up to this size (rooms of about 60 members) go out
/// as one frame.
pub const FRAGMENT_BYTES: usize = 8 * 1024;

/// The read buffer every socket keeps for its whole life: small, so an idle socket costs
/// little (tungstenite's default is 128 KiB). Client frames are mostly a hello, pings and
/// small states; a larger one (up to the frame limit) grows the buffer as it arrives.
pub const READ_BUFFER_BYTES: usize = 512;

/// The socket settings: no write buffering (frames are written as they are queued), and
/// `hard_limit` on inbound frames and messages. The session applies the protocol's own,
/// smaller, limit itself, so that a frame between the two gets a clean 1009.
pub fn config(hard_limit: usize, max_write_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_write_buffer)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit))
}

/// Why an upgrade request was refused, as the response that says so.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
    /// A header that tells the client what would work.
    pub hint: Option<(HeaderName, &'static str)>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut res = (self.status, self.message).into_response();
        if let Some((name, value)) = self.hint {
            res.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        res
    }
}

/// Check a WebSocket upgrade request: the `101 Switching Protocols` response to return,
/// and the upgrade to await once it is sent.
pub fn accept(req: &mut Request) -> Result<(Response, OnUpgrade), Refusal> {
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            message: "this path takes a WebSocket upgrade\n",
            hint: Some((header::UPGRADE, "websocket")),
        });
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "unsupported Sec-WebSocket-Version (13 is)\n",
            hint: Some((header::SEC_WEBSOCKET_VERSION, "13")),
        });
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "missing Sec-WebSocket-Key\n",
            hint: None,
        });
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        // Not a connection hyper can hand over (an HTTP/2 request, say).
        return Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            message: "this connection cannot be upgraded\n",
            hint: None,
        });
    };
    let res = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("static headers are valid");
    Ok((res, on_upgrade))
}

/// The socket, once the 101 has gone out; `None` if the client went away first.
pub async fn upgraded(on_upgrade: OnUpgrade, config: WebSocketConfig) -> Option<Socket> {
    let io = on_upgrade.await.ok()?;
    Some(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await)
}

/// Does a comma-separated header carry `token` (case-insensitive)?
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// One outgoing text message: `head`, which many sockets may share, then this socket's
/// own `tail`. Both are whole UTF-8 strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    head: Bytes,
    tail: Option<Bytes>,
}

impl Text {
    /// A shared head with a socket's own ending.
    pub fn with_tail(head: Bytes, tail: String) -> Text {
        Text {
            head,
            tail: Some(tail.into()),
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, Bytes::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The WebSocket messages that carry it: one text frame when it is small, else raw
    /// frames of at most [`FRAGMENT_BYTES`] (a text frame, continuations, the last one
    /// final), split on character boundaries so that every fragment is valid UTF-8 too.
    pub fn into_messages(self) -> Vec<Message> {
        if self.len() <= FRAGMENT_BYTES {
            let mut whole = self.head;
            if let Some(tail) = self.tail {
                let mut joined = Vec::with_capacity(whole.len() + tail.len());
                joined.extend_from_slice(&whole);
                joined.extend_from_slice(&tail);
                whole = joined.into();
            }
            return vec![Message::Text(
                Utf8Bytes::try_from(whole).expect("built from strings"),
            )];
        }
        let mut pieces: Vec<Bytes> = chunks(&self.head).map(|r| self.head.slice(r)).collect();
        if let Some(tail) = self.tail {
            pieces.push(tail);
        }
        let last = pieces.len() - 1;
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| {
                let opcode = if i == 0 { Data::Text } else { Data::Continue };
                Message::Frame(Frame::message(piece, OpCode::Data(opcode), i == last))
            })
            .collect()
    }
}

/// The whole message as a string (tests, logs).
impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in std::iter::once(&self.head).chain(&self.tail) {
            f.write_str(std::str::from_utf8(part).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text {
            head: s.into(),
            tail: None,
        }
    }
}

/// Ranges of at most [`FRAGMENT_BYTES`] covering `text`, cut on character boundaries.
fn chunks(text: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let mut end = (start + FRAGMENT_BYTES).min(text.len());
        // A UTF-8 continuation byte is 0b10xxxxxx: back up to the start of its character.
        while end < text.len() && text[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        let range = start..end;
        start = end;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(messages: &[Message]) -> (Vec<u8>, Vec<(OpCode, bool)>) {
        let mut all = Vec::new();
        let mut kinds = Vec::new();
        for m in messages {
            match m {
                Message::Frame(f) => {
                    assert!(
                        std::str::from_utf8(f.payload()).is_ok(),
                        "fragment is UTF-8"
                    );
                    assert!(f.payload().len() <= FRAGMENT_BYTES);
                    all.extend_from_slice(f.payload());
                    kinds.push((f.header().opcode, f.header().is_final));
                }
                Message::Text(t) => {
                    all.extend_from_slice(t.as_bytes());
                    kinds.push((OpCode::Data(Data::Text), true));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (all, kinds)
    }

    #[test]
    fn a_small_message_is_one_text_frame() {
        let text = Text::with_tail(Bytes::from_static(b"{\"a\":1"), ",\"self\":\"x\"}".into());
        let messages = text.clone().into_messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(payloads(&messages).0, b"{\"a\":1,\"self\":\"x\"}");
        assert_eq!(text.len(), 18);
    }

    #[test]
    fn a_large_message_is_fragments_cut_on_characters() {
        // Multi-byte characters straddle every FRAGMENT_BYTES boundary.
        let head: String = "aé€😀".repeat(3 * FRAGMENT_BYTES / 10);
        let text = Text::with_tail(Bytes::from(head.clone()), "!end".into());
        let messages = text.into_messages();
        let (all, kinds) = payloads(&messages);
        assert_eq!(all, format!("{head}!end").into_bytes());
        assert!(kinds.len() >= 3);
        assert_eq!(kinds[0], (OpCode::Data(Data::Text), false));
        for k in &kinds[1..kinds.len() - 1] {
            assert_eq!(*k, (OpCode::Data(Data::Continue), false));
        }
        assert_eq!(*kinds.last().unwrap(), (OpCode::Data(Data::Continue), true));
    }

    #[test]
    fn a_large_shared_head_without_tail_is_fragmented_too() {
        let head = "x".repeat(FRAGMENT_BYTES * 2 + 1);
        let (all, kinds) = payloads(&Text::from(head.clone()).into_messages());
        assert_eq!(all, head.into_bytes());
        assert_eq!(kinds.len(), 3);
    }

    /// A real tungstenite client reassembles the fragments into the one message.
    #[tokio::test]
    async fn a_peer_receives_the_fragments_as_one_message() {
        use futures_util::{SinkExt, StreamExt};
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut server =
            WebSocketStream::from_raw_socket(a, Role::Server, Some(config(1 << 20, 1 << 20))).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let head = format!("{{\"pad\":\"{}\"", "é".repeat(FRAGMENT_BYTES));
        let text = Text::with_tail(Bytes::from(head.clone()), ",\"self\":\"x\"}".into());
        let send = async {
            for message in text.into_messages() {
                server.feed(message).await.unwrap();
            }
            server.flush().await.unwrap();
            server
        };
        let recv = async { client.next().await.unwrap().unwrap() };
        let (_server, got) = tokio::join!(send, recv);
        assert_eq!(
            got,
            Message::Text(format!("{head},\"self\":\"x\"}}").into())
        );
    }

    #[test]
    fn upgrade_requests_are_checked() {
        let request = |headers: &[(&str, &str)]| {
            let mut b = Request::builder().uri("/server/ws/lobby");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(Body::empty()).unwrap()
        };
        let valid = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let status = |req: &mut Request| accept(req).err().map(|r| r.status);
        assert_eq!(
            status(&mut request(&valid[1..])),
            Some(StatusCode::UPGRADE_REQUIRED)
        );
        assert_eq!(
            status(&mut request(&[
                valid[0],
                valid[1],
                ("sec-websocket-version", "8"),
                valid[3]
            ])),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(&mut request(&valid[..3])),
            Some(StatusCode::BAD_REQUEST)
        );
        // Valid headers, but a request built by hand has no connection to take over.
        assert_eq!(
            status(&mut request(&valid)),
            Some(StatusCode::UPGRADE_REQUIRED)
        );
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
