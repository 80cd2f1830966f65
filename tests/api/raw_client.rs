//! A WebSocket client written with bytes, for what a well-behaved client library will not send:
//! headers announcing more than follows, reserved bits, invalid UTF-8. Shared by the `api` tests
//! (`raw_ws.rs`) and the `ws_memory` binary.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The masking key of every frame this client sends.
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A client frame header: FIN and opcode in `first` (RSV bits too, if a test wants them), then
/// the length in its shortest encoding, then the mask.
pub fn header(first: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= u64::from(u16::MAX) {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&MASK);
    h
}

/// A whole masked client frame.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(first, payload.len() as u64);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// A final text frame.
pub fn text(payload: &[u8]) -> Vec<u8> {
    frame(0x80 | TEXT, payload)
}

/// The port of an app address `http://127.0.0.1:PORT`.
pub fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// Reads the server's (unmasked) frames.
pub struct FrameReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

/// One frame from the server.
#[derive(Debug)]
pub struct ServerFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl FrameReader {
    /// The next frame; `None` when the connection ended (or failed) first.
    pub async fn frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((len, at)) = self.complete() {
                let opcode = self.buf[0] & 0x0F;
                let payload = self.buf[at..at + len].to_vec();
                self.buf.drain(..at + len);
                return Some(ServerFrame { opcode, payload });
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.read.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// When the buffer starts with a whole frame: its payload length and where the payload starts.
    fn complete(&self) -> Option<(usize, usize)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (len, at) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut be = [0; 8];
                be.copy_from_slice(&b[2..10]);
                (usize::try_from(u64::from_be_bytes(be)).ok()?, 10)
            }
            126 | 127 => return None,
            short => (usize::from(short), 2),
        };
        (b.len() >= at + len).then_some((len, at))
    }

    /// The next text message as JSON, pings skipped; panics on anything else or after `WAIT`.
    pub async fn json(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.frame())
                .await
                .expect("a message in time")
                .expect("a message before the connection ended");
            match frame.opcode {
                TEXT => return serde_json::from_slice(&frame.payload).expect("JSON"),
                PING | PONG => continue,
                other => panic!("expected a text frame, got opcode {other}: {frame:?}"),
            }
        }
    }

    /// The next message of type `kind`, others skipped (a dashboard's deltas).
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let v = self.json().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Reads until the server's close frame; answers its code. Panics if the connection ends
    /// without one, or after `WAIT`.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let frame = tokio::time::timeout(WAIT, self.frame())
                .await
                .expect("closed in time")
                .expect("a close frame before the connection ended");
            if frame.opcode == CLOSE {
                assert!(frame.payload.len() >= 2, "a close frame without a code");
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
    }
}

/// An upgraded socket: its frame reader and the raw write half.
pub struct RawWs {
    pub reader: FrameReader,
    pub writer: OwnedWriteHalf,
}

impl RawWs {
    /// Upgrades `path` with a bearer token (no Origin: not a browser); panics unless 101.
    pub async fn connect(address: &str, path: &str, token: &str) -> RawWs {
        let port = port_of(address);
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp connect");
        let (read, mut writer) = tcp.into_split();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        writer
            .write_all(request.as_bytes())
            .await
            .expect("send upgrade");
        let mut reader = FrameReader {
            read,
            buf: Vec::new(),
        };
        let end = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(i) = reader.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i + 4;
                }
                let mut chunk = [0u8; 4096];
                let n = reader.read.read(&mut chunk).await.expect("read upgrade");
                assert!(n > 0, "connection closed during the upgrade");
                reader.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("upgrade answered in time");
        let head = String::from_utf8_lossy(&reader.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        reader.buf.drain(..end);
        RawWs { reader, writer }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("send");
    }
}
