//! A raw viewer WebSocket client, for protocol-level cases a browser cannot produce.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the worker sent after the hello: accepted with `ready`, or rejected with an error and a close code.
#[derive(Debug)]
pub enum Hello {
    Ready {
        socket: Box<Socket>,
        ready: Value,
    },
    Rejected {
        code: String,
        message: String,
        close_code: Option<u16>,
    },
}

/// Opens the viewer WebSocket from an attach response and sends the hello with `token`.
pub async fn connect(ws_url: &str, token: &str) -> Result<Hello> {
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .context("viewer WebSocket connect failed")?;
    socket
        .send(Message::text(json!({ "type": "hello", "token": token }).to_string()))
        .await?;
    let first = next_text(&mut socket).await?;
    if first["type"] == "ready" {
        return Ok(Hello::Ready {
            socket: Box::new(socket),
            ready: first,
        });
    }
    let close_code = next_close(&mut socket).await;
    Ok(Hello::Rejected {
        code: first["code"].as_str().unwrap_or_default().to_owned(),
        message: first["message"].as_str().unwrap_or_default().to_owned(),
        close_code,
    })
}

/// Next JSON text message, skipping binary screen updates; fails after 15 s.
pub async fn next_text(socket: &mut Socket) -> Result<Value> {
    let wait = async {
        while let Some(message) = socket.next().await {
            match message? {
                Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
                Message::Close(frame) => bail!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
        bail!("socket ended")
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .context("no text message within 15 s")?
}

/// Next text message of `kind`, skipping others.
pub async fn next_of_type(socket: &mut Socket, kind: &str) -> Result<Value> {
    loop {
        let message = next_text(socket).await?;
        if message["type"] == kind {
            return Ok(message);
        }
    }
}

/// Waits for the close frame and returns its code.
pub async fn next_close(socket: &mut Socket) -> Option<u16> {
    let wait = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(15), wait).await.ok().flatten()
}

pub async fn send_json(socket: &mut Socket, value: Value) -> Result<()> {
    socket.send(Message::text(value.to_string())).await?;
    Ok(())
}

/// The screen as a viewer reconstructs it from rectangle messages (zlib RGBA only).
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            rgba: vec![0; width * height * 4],
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Applies one binary message; returns true at a batch end.
    pub fn apply(&mut self, message: &[u8]) -> Result<bool> {
        use std::io::Read;
        match message.first() {
            Some(2) => return Ok(true),
            Some(1) => {}
            other => bail!("unknown binary message kind {other:?}"),
        }
        anyhow::ensure!(message.len() >= 10 && message[1] == 0, "expected a zlib RGBA rectangle");
        let field = |i: usize| usize::from(u16::from_be_bytes([message[i], message[i + 1]]));
        let (x, y, width, height) = (field(2), field(4), field(6), field(8));
        let mut pixels = Vec::new();
        flate2::read::ZlibDecoder::new(&message[10..]).read_to_end(&mut pixels)?;
        anyhow::ensure!(
            pixels.len() == width * height * 4,
            "rectangle payload has {} bytes",
            pixels.len()
        );
        for row in 0..height {
            let start = ((y + row) * self.width + x) * 4;
            self.rgba[start..start + width * 4].copy_from_slice(&pixels[row * width * 4..(row + 1) * width * 4]);
        }
        Ok(false)
    }
}

/// Reads messages until `batches` batch ends have been applied to `canvas`.
pub async fn read_batches(socket: &mut Socket, canvas: &mut Canvas, batches: usize) -> Result<()> {
    let mut seen = 0;
    let wait = async {
        while seen < batches {
            match socket.next().await.context("socket ended")?? {
                Message::Binary(bytes) if canvas.apply(&bytes)? => seen += 1,
                Message::Close(frame) => bail!("socket closed: {frame:?}"),
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .context("no screen update within 15 s")?
}
