//! Request bodies, for every frontend: read whole up to a limit, and drained within
//! bounds when nobody reads them (closing a connection with unread data resets it, and
//! a client still sending would lose the answer).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use http::{header, HeaderMap};

/// The most bytes a request body may have.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most bytes the request's header fields may take in all (names, values and
/// separators). Longer request lines (path and query string) than 64 KiB are refused
/// by the HTTP server itself, 414 without a body.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Why the request's header fields are refused, when they are too large.
pub fn headers_too_large(headers: &HeaderMap) -> Option<String> {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        format!("the request's header fields take {bytes} bytes, more than {MAX_HEADER_BYTES}")
    })
}

/// The most bytes of an oversized body read (and dropped) before answering 413, so
/// that the client, still sending, reads the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The connection failed while reading.
    Unreadable(String),
}

impl BodyError {
    /// What a client reads.
    pub fn detail(&self) -> String {
        match self {
            BodyError::TooLarge => {
                format!("the request body is larger than {MAX_BODY_BYTES} bytes")
            }
            BodyError::Unreadable(e) => format!("cannot read the request body: {e}"),
        }
    }
}

/// Whether the request announces a body worth draining (not empty, not huge).
pub fn declares_body(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0 && n <= DRAIN_LIMIT as u64),
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// Reads the body, at most [`MAX_BODY_BYTES`].
pub async fn read<S, B>(
    headers: &HeaderMap,
    mut body: std::pin::Pin<&mut S>,
) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if buf.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        buf.put(chunk);
    }
    Ok(buf.freeze())
}

/// Reads and drops what is left of a body, within bounds.
pub async fn drain<S, B>(mut body: std::pin::Pin<&mut S>)
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let mut seen = 0usize;
    // Usually the body was read already: no timer for that.
    loop {
        match body.next().now_or_never() {
            Some(Some(Ok(c))) => seen += c.remaining(),
            Some(_) => return,
            None => break,
        }
        if seen > DRAIN_LIMIT {
            return;
        }
    }
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(Ok(c)) => {
                    seen += c.remaining();
                    if seen > DRAIN_LIMIT {
                        return;
                    }
                }
                _ => return,
            },
            _ = &mut deadline => return,
        }
    }
}

/// The request's media type: its `Content-Type` without parameters such as
/// `charset`, lower case; `None` without one.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Whether a `Content-Type` is `application/x-www-form-urlencoded` (parameters such
/// as `charset` aside).
pub fn is_form(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}
