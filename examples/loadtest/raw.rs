//! A minimal WebSocket subscriber over a raw TCP stream: the fan-out's
//! receive path. One `read` takes in as many frames as the kernel holds
//! (64 KiB buffer); frames are cut out in place and handed over as text
//! slices, with no per-frame allocation, UTF-8 check or JSON tree.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::USER_AGENT;

/// Mask for client frames (any key will do; the server unmasks).
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x08];
/// Bytes asked for per read.
const READ_CHUNK: usize = 64 * 1024;

/// A subscriber socket after the handshake.
pub struct RawSub {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

/// What a frame was.
pub enum Frame<'a> {
    /// A text frame's payload.
    Text(&'a str),
    /// Anything else already handled (ping answered, pong, binary).
    Other,
    /// A close frame, or the end of the stream.
    End,
}

fn encode_masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else {
        out.push(0x80 | 126);
        out.extend((n as u16).to_be_bytes());
    }
    out.extend(MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

impl RawSub {
    /// Upgrades with the session cookie and joins `room` (waits for its ack).
    pub async fn subscribe(addr: SocketAddr, cookie: &str, room: &str) -> Result<Self, String> {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Cookie: wsgate_session={cookie}\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed during the handshake".into());
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            let line = String::from_utf8_lossy(
                &buf[..buf.iter().position(|b| *b == b'\r').unwrap_or(buf.len())],
            )
            .into_owned();
            return Err(format!("upgrade refused: {line}"));
        }
        let mut sub = Self {
            s,
            buf,
            start: head_end,
        };
        let join = format!(r#"{{"type":"join","room":"{room}","ref":"j"}}"#);
        sub.s
            .write_all(&encode_masked(0x1, join.as_bytes()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
            match next {
                Ok(Frame::Text(t)) if t.starts_with("{\"type\":\"ack\"") => return Ok(sub),
                Ok(Frame::Text(t)) if t.starts_with("{\"type\":\"error\"") => {
                    return Err(t.to_owned());
                }
                Ok(Frame::Text(_) | Frame::Other) => {}
                Ok(Frame::End) => return Err("closed before the join ack".into()),
                Err(_) => return Err("no join ack".into()),
            }
        }
    }

    /// (opcode, payload start, payload end) of the frame at `start`.
    fn cut(&self) -> Option<(u8, usize, usize)> {
        let b = &self.buf[self.start..];
        if b.len() < 2 {
            return None;
        }
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        (b.len() >= at + len).then(|| (b[0] & 0x0f, self.start + at, self.start + at + len))
    }

    /// The next frame; pings are answered here.
    pub async fn next(&mut self) -> Frame<'_> {
        loop {
            if let Some((op, from, to)) = self.cut() {
                self.start = to;
                return match op {
                    0x1 => match std::str::from_utf8(&self.buf[from..to]) {
                        Ok(t) => Frame::Text(t),
                        Err(_) => Frame::Other,
                    },
                    0x8 => Frame::End,
                    0x9 => {
                        let pong = encode_masked(0xA, &self.buf[from..to]);
                        if self.s.write_all(&pong).await.is_err() {
                            return Frame::End;
                        }
                        Frame::Other
                    }
                    _ => Frame::Other,
                };
            }
            // Keep the unread tail, then read as much as the kernel has.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(READ_CHUNK);
            match self.s.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Frame::End,
                Ok(_) => {}
            }
        }
    }
}
