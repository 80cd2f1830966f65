//! A guard on a socket's incoming bytes, in front of actix-ws's decoder. It reads each WebSocket
//! frame header as the bytes arrive and refuses a frame — or a fragmented message — whose
//! declared length is over `ws.max_frame_bytes` as soon as that header is complete.
//!
//! Why our own: actix-http 3.20's frame parser waits for a frame's whole payload before it compares
//! the declared length with its maximum, and actix-ws 0.4's `MessageStream` appends every chunk it
//! reads to its buffer before decoding. A header announcing 1 TiB followed by a stream of bytes
//! therefore made the server buffer all of it. With this guard in front, the decoder's buffer
//! never holds more than one allowed frame plus one read: a frame over the limit is refused at its
//! header, and the socket closes with 1009.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// The longest frame header (RFC 6455 §5.2): 2 bytes, a 64-bit extended length, a masking key.
const MAX_HEADER: usize = 2 + 8 + 4;

/// A frame or message declared longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig;

/// Follows frame boundaries in a stream of client bytes without keeping any payload: only the
/// header being read (at most 14 bytes), the payload bytes left to skip, and the length of the
/// fragmented message under way.
#[derive(Debug)]
pub struct FrameLimit {
    max: u64,
    header: [u8; MAX_HEADER],
    /// Header bytes read so far.
    have: usize,
    /// Payload bytes of the current frame not seen yet (0: a header comes next).
    remaining: u64,
    /// Payload bytes of the data message being received, fragments put together.
    message: u64,
}

impl FrameLimit {
    pub fn new(max_frame_bytes: usize) -> FrameLimit {
        FrameLimit {
            max: u64::try_from(max_frame_bytes).unwrap_or(u64::MAX),
            header: [0; MAX_HEADER],
            have: 0,
            remaining: 0,
            message: 0,
        }
    }

    /// Takes the next bytes of the stream; `Err(TooBig)` as soon as a complete header declares a
    /// frame, or a continuation makes a message, longer than the limit. Once it has answered
    /// `Err`, the stream is over: further bytes must not be fed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TooBig> {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[skip..];
                self.remaining -= skip as u64;
                continue;
            }
            let need = self.header_len();
            let take = (need - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            // The length byte may just have told us the header is longer than we thought.
            if self.have == self.header_len() {
                self.end_of_header()?;
            }
        }
        Ok(())
    }

    /// The current header's full length, as far as the bytes read so far tell.
    fn header_len(&self) -> usize {
        if self.have < 2 {
            return 2;
        }
        let second = self.header[1];
        let extended = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn end_of_header(&mut self) -> Result<(), TooBig> {
        let first = self.header[0];
        let length = match self.header[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut be = [0; 8];
                be.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(be)
            }
            short => u64::from(short),
        };
        self.have = 0;
        self.remaining = length;
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0F;
        if length > self.max {
            return Err(TooBig);
        }
        // Control frames (opcodes 8–15) may come between the fragments of a message and are not
        // part of it; the decoder refuses those over 125 bytes.
        if opcode & 0x08 == 0 {
            // 0 continues the message under way; 1, 2 (and reserved data opcodes, which the
            // decoder refuses) start one.
            self.message = if opcode == 0 {
                self.message.saturating_add(length)
            } else {
                length
            };
            if self.message > self.max {
                return Err(TooBig);
            }
            if fin {
                self.message = 0;
            }
        }
        Ok(())
    }
}

/// The request's payload with a `FrameLimit` on it: after a frame over the limit it yields
/// `PayloadError::Overflow` (actix-ws reports it as `ProtocolError::Io` wrapping it, see
/// `is_too_big`) and stops reading, so nothing more is buffered for this socket.
pub struct GuardedPayload<S> {
    inner: S,
    limit: FrameLimit,
    tripped: bool,
}

impl<S> GuardedPayload<S> {
    pub fn new(inner: S, max_frame_bytes: usize) -> GuardedPayload<S> {
        GuardedPayload {
            inner,
            limit: FrameLimit::new(max_frame_bytes),
            tripped: false,
        }
    }
}

impl<S> Stream for GuardedPayload<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.tripped {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        Poll::Ready(match item {
            Some(Ok(bytes)) => match self.limit.feed(&bytes) {
                Ok(()) => Some(Ok(bytes)),
                // The whole read is dropped, frames before the big one included: the socket is
                // closing anyway.
                Err(TooBig) => {
                    self.tripped = true;
                    Some(Err(PayloadError::Overflow))
                }
            },
            other => other,
        })
    }
}

/// Whether an error of actix-ws's stream is this guard's refusal: actix-ws wraps the payload's
/// errors in `ProtocolError::Io(io::Error::other(payload_error))`.
pub fn is_too_big(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<PayloadError>())
        .is_some_and(|e| matches!(e, PayloadError::Overflow))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: u8 = 0x1;
    const BINARY: u8 = 0x2;
    const CONTINUATION: u8 = 0x0;
    const PING: u8 = 0x9;
    const CLOSE: u8 = 0x8;

    /// A client frame header (masked, as clients must send them) for `len` payload bytes.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        h
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = header(fin, opcode, len as u64);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    /// Feeds `bytes` cut at `cut`, then the rest; answers the first refusal.
    fn feed_split(limit: &mut FrameLimit, bytes: &[u8], cut: usize) -> Result<(), TooBig> {
        limit.feed(&bytes[..cut])?;
        limit.feed(&bytes[cut..])
    }

    #[test]
    fn frames_within_the_limit_pass_whatever_the_cuts() {
        // 7-bit, 16-bit and a fragmented message up to exactly the limit, with a ping between
        // the fragments.
        let mut stream = frame(true, TEXT, 10);
        stream.extend(frame(true, BINARY, 300));
        stream.extend(frame(false, TEXT, 200));
        stream.extend(frame(true, PING, 4));
        stream.extend(frame(true, CONTINUATION, 100));
        stream.extend(frame(true, TEXT, 300));
        stream.extend(frame(true, CLOSE, 2));
        for cut in 0..=stream.len() {
            let mut limit = FrameLimit::new(300);
            assert_eq!(feed_split(&mut limit, &stream, cut), Ok(()), "cut at {cut}");
            assert_eq!(limit.have, 0);
            assert_eq!(limit.remaining, 0);
        }
        // Byte by byte.
        let mut limit = FrameLimit::new(300);
        for b in &stream {
            assert_eq!(limit.feed(std::slice::from_ref(b)), Ok(()));
        }
    }

    #[test]
    fn a_header_over_the_limit_is_refused_once_complete_at_every_cut() {
        for len in [301u64, 70_000, 1 << 30, 1 << 40, u64::MAX] {
            let mut bytes = frame(true, TEXT, 20);
            bytes.extend(header(true, TEXT, len));
            for cut in 0..bytes.len() {
                let mut limit = FrameLimit::new(300);
                limit
                    .feed(&bytes[..cut])
                    .expect("a partial header is no refusal");
                assert_eq!(
                    limit.feed(&bytes[cut..]),
                    Err(TooBig),
                    "len {len}, cut {cut}"
                );
            }
            // Not one byte early: without its last header byte, nothing is decided.
            let mut limit = FrameLimit::new(300);
            assert_eq!(limit.feed(&bytes[..bytes.len() - 1]), Ok(()));
            assert!(limit.have > 0);
        }
    }

    #[test]
    fn one_gib_announced_is_refused_before_any_payload() {
        let mut limit = FrameLimit::new(65_536);
        assert_eq!(limit.feed(&header(true, TEXT, 1 << 30)), Err(TooBig));
        // 64-bit length with the most significant bit set (invalid per RFC 6455): refused too.
        let mut limit = FrameLimit::new(65_536);
        assert_eq!(limit.feed(&header(true, BINARY, 1 << 63)), Err(TooBig));
    }

    #[test]
    fn continuations_count_towards_the_message() {
        let mut limit = FrameLimit::new(300);
        assert_eq!(limit.feed(&frame(false, TEXT, 200)), Ok(()));
        assert_eq!(limit.feed(&frame(true, PING, 10)), Ok(()));
        assert_eq!(limit.feed(&frame(false, CONTINUATION, 100)), Ok(()));
        // 300 so far: one more byte of the same message is too much, refused at its header.
        assert_eq!(limit.feed(&header(true, CONTINUATION, 1)), Err(TooBig));

        // A finished message starts the count again.
        let mut limit = FrameLimit::new(300);
        assert_eq!(limit.feed(&frame(false, TEXT, 200)), Ok(()));
        assert_eq!(limit.feed(&frame(true, CONTINUATION, 100)), Ok(()));
        assert_eq!(limit.feed(&frame(false, BINARY, 250)), Ok(()));
        assert_eq!(limit.feed(&frame(true, CONTINUATION, 50)), Ok(()));
    }

    #[test]
    fn control_frames_are_bounded_too_and_not_part_of_a_message() {
        let mut limit = FrameLimit::new(300);
        assert_eq!(limit.feed(&header(true, PING, 1 << 30)), Err(TooBig));
        let mut limit = FrameLimit::new(300);
        assert_eq!(limit.feed(&frame(false, TEXT, 290)), Ok(()));
        for _ in 0..10 {
            assert_eq!(limit.feed(&frame(true, PING, 100)), Ok(()));
        }
        assert_eq!(limit.feed(&frame(true, CONTINUATION, 10)), Ok(()));
    }

    #[test]
    fn unmasked_headers_are_followed_too() {
        // The decoder refuses unmasked client frames; the guard must still find their ends.
        let mut bytes = vec![0x81, 126, 0x01, 0x00];
        bytes.extend(std::iter::repeat_n(b'y', 256));
        bytes.extend([0x81, 127, 0, 0, 0, 0, 0, 0, 0x01, 0x2D]);
        let mut limit = FrameLimit::new(300);
        assert_eq!(limit.feed(&bytes), Err(TooBig));
    }

    #[test]
    fn the_guarded_stream_stops_at_the_refusal() {
        use futures_util::StreamExt;
        let mut big = frame(true, TEXT, 5);
        big.extend(header(true, TEXT, 1 << 30));
        let chunks: Vec<Result<Bytes, PayloadError>> = vec![
            Ok(Bytes::from(frame(true, TEXT, 3))),
            Ok(Bytes::from(big)),
            Ok(Bytes::from(vec![b'z'; 64])),
        ];
        let mut guarded = GuardedPayload::new(futures_util::stream::iter(chunks), 300);
        let first = futures_util::FutureExt::now_or_never(guarded.next());
        assert!(matches!(first, Some(Some(Ok(_)))));
        match futures_util::FutureExt::now_or_never(guarded.next()) {
            Some(Some(Err(e))) => assert!(is_too_big(&std::io::Error::other(e))),
            other => panic!("expected the refusal, got {other:?}"),
        }
        assert!(matches!(
            futures_util::FutureExt::now_or_never(guarded.next()),
            Some(None)
        ));
        assert!(!is_too_big(&std::io::Error::other("connection reset")));
    }
}
