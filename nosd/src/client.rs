//! A blocking client for the management socket.

use crate::api::{Request, Response};
use anyhow::Context;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends one request and waits for its response.
pub fn call(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach nosd at {} (is it running? use --socket to point elsewhere)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).context("no answer from nosd")?;
    serde_json::from_str(&out)
        .with_context(|| format!("nosd sent an answer that is not understood: {out}"))
}
