//! The client side of RFC 6455, only as much as the bench needs: the opening handshake,
//! unmasked frames in (text, ping, close; fragments joined), masked frames out.
//!
//! Why not tokio-tungstenite's stream: its read buffer grows to the largest frame a socket
//! ever received and keeps that capacity. A 10,000-member room sends every joiner a
//! snapshot of up to 700 KB, so the bench held gigabytes for frames long gone. Here a
//! socket reads into a small buffer; a frame that does not fit gets a buffer of exactly
//! its size, which is given back (the buffer shrinks) as soon as the frame is handled.
//! Reads also take whatever the kernel has, not 4 KiB at a time.
//!
//! The handshake and the accept-key check use tungstenite's helpers. No extensions are
//! offered (no permessage-deflate), so the byte counts are the server's plain frames.

use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Frame opcodes (RFC 6455 section 5.2).
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// What an idle socket's read buffer holds: rosters of small rooms and diffs fit.
const CHUNK: usize = 2048;
/// Always leave this much room for a read, so the kernel's bytes come in few calls.
const MIN_READ: usize = 1024;
/// A buffer grown past this for one big frame is replaced by a small one afterwards.
const SHRINK_ABOVE: usize = 64 * 1024;
/// Largest frame or message accepted: far above any roster a server may send.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Largest response head of the opening handshake.
const MAX_HEAD: usize = 16 * 1024;

/// The read side: a buffer, the frames found in it, fragments being joined.
pub struct Reader {
    io: OwnedReadHalf,
    /// Bytes read from the socket: handshake, framing, control frames and payloads.
    wire: Arc<AtomicU64>,
    buf: Vec<u8>,
    /// Start of the bytes not handled yet.
    pos: usize,
    /// Bytes (from `pos`) the next frame needs in the buffer, once its header is known.
    want: usize,
    /// A fragmented message being joined: its opcode and payload so far.
    frag: Option<(u8, Vec<u8>)>,
    /// What `payload` returns: a range of `buf`, or (`None`) the last joined message.
    current: Option<std::ops::Range<usize>>,
    joined: Vec<u8>,
}

/// The write side; every frame masked with a fresh key.
pub struct Writer {
    io: OwnedWriteHalf,
    rng: u64,
    /// The tail of a frame `try_send` could only write in part; goes out first.
    pending: Vec<u8>,
}

/// What `Reader::next` found; its bytes are `Reader::payload` until the next `fill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A whole text or binary message (fragments joined).
    Message(u8),
    /// A control frame: ping, pong or close.
    Control(u8),
}

/// Opens a WebSocket over a connected stream: `GET path` with the upgrade headers; the
/// answer must be 101 with the right `Sec-WebSocket-Accept`.
pub async fn handshake(
    stream: TcpStream,
    host: &str,
    path: &str,
    wire: Arc<AtomicU64>,
) -> Result<(Reader, Writer)> {
    let key = generate_key();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (r, mut w) = stream.into_split();
    w.write_all(req.as_bytes()).await?;
    let mut reader = Reader {
        io: r,
        wire,
        buf: Vec::with_capacity(CHUNK),
        pos: 0,
        want: 0,
        frag: None,
        current: None,
        joined: Vec::new(),
    };
    let end = loop {
        if let Some(i) = reader.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if reader.buf.len() > MAX_HEAD {
            bail!("handshake response head over {MAX_HEAD} bytes");
        }
        if reader.fill().await? == 0 {
            bail!("connection closed during the handshake");
        }
    };
    let head = std::str::from_utf8(&reader.buf[..end]).context("handshake response")?;
    check_response(head, &key)?;
    reader.pos = end;
    let rng = crate::wire::id_hash(&key) | 1;
    Ok((
        reader,
        Writer {
            io: w,
            rng,
            pending: Vec::new(),
        },
    ))
}

/// A 101 answer whose accept key matches ours.
pub fn check_response(head: &str, key: &str) -> Result<()> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("101") {
        bail!("handshake answered {status:?}");
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.trim());
    if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
        bail!("handshake: wrong or missing Sec-WebSocket-Accept ({accept:?})");
    }
    Ok(())
}

/// A frame header at the start of `b`: (fin, opcode, header length, payload length), or
/// `None` when more bytes are needed.
pub fn parse_header(b: &[u8]) -> Result<Option<(bool, u8, usize, usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    if b[0] & 0x70 != 0 {
        bail!("reserved bits set (no extension was negotiated)");
    }
    let opcode = b[0] & 0x0f;
    if b[1] & 0x80 != 0 {
        bail!("masked frame from the server");
    }
    let (hl, len) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (4, usize::from(u16::from_be_bytes([b[2], b[3]])))
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let n = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
            (10, usize::try_from(n).unwrap_or(usize::MAX))
        }
        n => (2, usize::from(n)),
    };
    if len > MAX_MESSAGE {
        bail!("frame of {len} bytes (limit {MAX_MESSAGE})");
    }
    if opcode >= op::CLOSE && (len > 125 || !fin) {
        bail!("bad control frame (opcode {opcode}, {len} bytes, fin {fin})");
    }
    if !matches!(
        opcode,
        op::CONTINUATION | op::TEXT | op::BINARY | op::CLOSE | op::PING | op::PONG
    ) {
        bail!("unknown opcode {opcode}");
    }
    Ok(Some((fin, opcode, hl, len)))
}

impl Reader {
    /// The next message or control frame among the bytes already read, if complete.
    pub fn next(&mut self) -> Result<Option<Next>> {
        loop {
            let Some((fin, opcode, hl, len)) = parse_header(&self.buf[self.pos..])? else {
                self.want = 0;
                return Ok(None);
            };
            if self.buf.len() - self.pos < hl + len {
                self.want = hl + len;
                return Ok(None);
            }
            self.want = 0;
            let range = self.pos + hl..self.pos + hl + len;
            self.pos = range.end;
            match (opcode, self.frag.is_some()) {
                (op::CLOSE | op::PING | op::PONG, _) => {
                    self.current = Some(range);
                    return Ok(Some(Next::Control(opcode)));
                }
                (op::TEXT | op::BINARY, false) if fin => {
                    self.current = Some(range);
                    return Ok(Some(Next::Message(opcode)));
                }
                (op::TEXT | op::BINARY, false) => {
                    self.frag = Some((opcode, self.buf[range].to_vec()));
                }
                (op::CONTINUATION, true) => {
                    let (first, mut data) = self.frag.take().expect("a fragment");
                    if data.len() + len > MAX_MESSAGE {
                        bail!("fragmented message over {MAX_MESSAGE} bytes");
                    }
                    data.extend_from_slice(&self.buf[range]);
                    if fin {
                        self.joined = data;
                        self.current = None;
                        return Ok(Some(Next::Message(first)));
                    }
                    self.frag = Some((first, data));
                }
                _ => bail!(
                    "unexpected opcode {opcode} (fragment pending: {})",
                    self.frag.is_some()
                ),
            }
        }
    }

    /// The bytes of what `next` returned last.
    pub fn payload(&self) -> &[u8] {
        match &self.current {
            Some(r) => &self.buf[r.clone()],
            None => &self.joined,
        }
    }

    /// Reads more bytes (cancel-safe: nothing is lost when the future is dropped);
    /// 0 at the end of the stream. Invalidates `payload`.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        self.current = Some(0..0);
        if self.joined.capacity() > SHRINK_ABOVE {
            self.joined = Vec::new();
        }
        let need = self.want.max(self.buf.len() + MIN_READ);
        if self.buf.capacity() > SHRINK_ABOVE && need <= CHUNK {
            let mut small = Vec::with_capacity(CHUNK);
            small.extend_from_slice(&self.buf);
            self.buf = small;
        } else if need > self.buf.capacity() {
            // Exactly the frame (or one read more): no doubling for big frames.
            self.buf.reserve_exact(need - self.buf.len());
        }
        let n = self.io.read_buf(&mut self.buf).await?;
        self.wire.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    /// Bytes of buffer this reader holds (for tests of the shrinking).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl Writer {
    fn frame(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        // xorshift64: masks need not be secret here, only present and varying.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        encode_frame(opcode, payload, (self.rng as u32).to_be_bytes())
    }

    /// One masked frame with FIN set.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.flush_pending().await?;
        let frame = self.frame(opcode, payload);
        self.io.write_all(&frame).await
    }

    /// Writes a frame at once, without waiting for the socket, if the socket takes at
    /// least its first byte (a small frame on an idle socket always goes whole); false
    /// when it must go through `send`. A part the socket did not take is kept for
    /// `flush_pending`.
    pub fn try_send(&mut self, opcode: u8, payload: &[u8]) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let frame = self.frame(opcode, payload);
        let mut done = 0;
        while done < frame.len() {
            match self.io.try_write(&frame[done..]) {
                Ok(n) if n > 0 => done += n,
                _ => break,
            }
        }
        if done == 0 {
            return false;
        }
        self.pending = frame[done..].to_vec();
        true
    }

    /// A part of a frame `try_send` left is waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub async fn flush_pending(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.io.write_all(&self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }

    /// A close frame with this code (and no reason).
    pub async fn close(&mut self, code: u16) -> std::io::Result<()> {
        self.send(op::CLOSE, &code.to_be_bytes()).await
    }
}

/// A client frame: FIN, the opcode, the mask bit and key, the masked payload.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The status code of a close frame's payload (none when it is empty).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server frame (unmasked).
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = encode_frame(opcode, payload, [0; 4]);
        // Drop the mask bit and the (zero) key: the payload is unchanged by a zero mask.
        f[0] = if fin { f[0] } else { f[0] & 0x7f };
        f[1] &= 0x7f;
        let hl = f.len() - payload.len();
        f.drain(hl - 4..hl);
        f
    }

    #[test]
    fn headers_and_masking() {
        let f = encode_frame(op::TEXT, b"hi", [1, 2, 3, 4]);
        assert_eq!(f, [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        let big = vec![b'x'; 70_000];
        let f = encode_frame(op::TEXT, &big, [0; 4]);
        assert_eq!(f[1], 0x80 | 127);
        let s = server_frame(true, op::TEXT, &big);
        assert_eq!(
            parse_header(&s).unwrap(),
            Some((true, op::TEXT, 10, 70_000))
        );
        let s = server_frame(false, op::TEXT, &[b'y'; 300]);
        assert_eq!(parse_header(&s).unwrap(), Some((false, op::TEXT, 4, 300)));
        assert_eq!(parse_header(&s[..3]).unwrap(), None, "length not complete");
        assert!(parse_header(&[0x81, 0x80]).is_err(), "masked server frame");
        assert!(parse_header(&[0xC1, 0x00]).is_err(), "reserved bit");
        assert!(parse_header(&[0x09, 0x00]).is_err(), "fragmented ping");
        assert_eq!(close_code(&[0x03, 0xe8]), Some(1000));
        assert_eq!(close_code(&[]), None);
    }

    #[test]
    fn response_checks() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        check_response(ok, key).unwrap();
        assert!(check_response("HTTP/1.1 400 Bad Request\r\n\r\n", key).is_err());
        let wrong = ok.replace("s3pP", "AAAA");
        assert!(check_response(&wrong, key).is_err());
    }

    #[tokio::test]
    async fn frames_in_pieces_then_the_buffer_shrinks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let big = "b".repeat(300_000);
        let big2 = big.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            )
            .into_bytes();
            out.extend(server_frame(true, op::TEXT, b"small"));
            out.extend(server_frame(true, op::TEXT, big2.as_bytes()));
            out.extend(server_frame(false, op::TEXT, b"frag"));
            out.extend(server_frame(true, op::PING, b"p"));
            out.extend(server_frame(true, op::CONTINUATION, b"mented"));
            out.extend(server_frame(true, op::CLOSE, &1001u16.to_be_bytes()));
            // In small writes, so frames arrive cut anywhere.
            for piece in out.chunks(7_001) {
                s.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            rest
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let wire = Arc::new(AtomicU64::new(0));
        let (mut r, mut w) = handshake(stream, &addr.to_string(), "/x", wire.clone())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut max_cap = 0;
        'outer: loop {
            while let Some(n) = r.next().unwrap() {
                got.push((n, String::from_utf8_lossy(r.payload()).into_owned()));
                if n == Next::Control(op::CLOSE) {
                    break 'outer;
                }
            }
            max_cap = max_cap.max(r.capacity());
            assert!(r.fill().await.unwrap() > 0);
        }
        assert_eq!(got[0], (Next::Message(op::TEXT), "small".into()));
        assert_eq!(got[1], (Next::Message(op::TEXT), big));
        assert_eq!(got[2], (Next::Control(op::PING), "p".into()));
        assert_eq!(got[3], (Next::Message(op::TEXT), "fragmented".into()));
        assert_eq!(got[4].0, Next::Control(op::CLOSE));
        assert!(max_cap >= 300_000);
        // The next read gives the big buffer back.
        w.close(1000).await.unwrap();
        drop(w);
        assert_eq!(r.fill().await.unwrap(), 0);
        assert!(r.capacity() <= CHUNK, "capacity {}", r.capacity());
        assert!(wire.load(Ordering::Relaxed) > 300_000);
        let rest = server.await.unwrap();
        // Our close frame, masked: FIN+close, mask bit + 2 bytes, key, code.
        assert_eq!(&rest[..2], &[0x88, 0x82]);
        let code = [rest[6] ^ rest[2], rest[7] ^ rest[3]];
        assert_eq!(u16::from_be_bytes(code), 1000);
    }
}
