//! The live sockets of the simulated students and dashboards (docs/protocol.md), on
//! tokio-tungstenite (goose's own version) with a 4 KiB read buffer: the default 128 KiB, filled
//! eagerly by each read, costs the generator a core at 10,000 sockets.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long opening a socket (connect, upgrade, first messages) may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens `path` on the server at `base` (`http://host:port`) with a bearer token, and reads the
/// first message, `welcome`.
pub async fn open(base: &str, path: &str, token: &str) -> anyhow::Result<Socket> {
    let url = format!(
        "{}{path}",
        base.trim_end_matches('/')
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (mut socket, _) = tokio::time::timeout(
        OPEN_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await
    .context("opening the socket timed out")?
    .with_context(|| format!("opening {path}"))?;
    let welcome = next_json(&mut socket, Instant::now() + OPEN_TIMEOUT).await?;
    if welcome["type"] != "welcome" {
        bail!("first message is not welcome: {welcome}");
    }
    Ok(socket)
}

pub async fn send(socket: &mut Socket, message: &Value) -> anyhow::Result<()> {
    socket
        .send(Message::text(message.to_string()))
        .await
        .context("sending on the socket")
}

/// The next JSON message, or an error at `deadline`, on a close or a broken socket. Pings are
/// answered by tungstenite itself on the next read or write.
pub async fn next_json(socket: &mut Socket, deadline: Instant) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), socket.next())
            .await
            .context("no message before the deadline")?;
        match frame {
            None => bail!("socket closed"),
            Some(Err(e)) => bail!("socket error: {e}"),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).context("a message that is not JSON");
            }
            Some(Ok(Message::Close(frame))) => {
                bail!(
                    "socket closed by the server: {}",
                    frame.map_or("no code".to_owned(), |f| format!("{} {}", f.code, f.reason))
                )
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Like `next_json`, but `None` when `until` passes without a message (a quiet dashboard).
pub async fn next_json_until(socket: &mut Socket, until: Instant) -> anyhow::Result<Option<Value>> {
    match tokio::time::timeout_at(until.into(), next_json(socket, until + OPEN_TIMEOUT)).await {
        Err(_) => Ok(None),
        Ok(v) => v.map(Some),
    }
}
