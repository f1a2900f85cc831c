//! File GETs answered with sendfile(2), before hyper sees the connection.
//!
//! hyper writes every body from user space: an image or a mirrored package is read into a
//! buffer and copied out again, and that copy kept seed below nginx (which hands the file to
//! the kernel with sendfile) on large files and on the mirror's packages (bench/http). So a
//! connection starts here: while its requests are plain HTTP/1.1 GETs or HEADs of
//! `/images/…` or of a mirror file already on disk, they are parsed (httparse, as hyper does)
//! and answered with the headers `files::plan` decides and a body the kernel copies from the
//! page cache to the socket. The first request that is anything else (another route, a body, a
//! percent-encoded path, HTTP/1.0, an upgrade, a head that does not parse or is too large) and
//! every request after it are hyper's: the connection is handed over with the bytes already
//! read in front of it ([`Prefixed`]), and hyper answers it as it would have from the start.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::app::{App, HEADER_TIMEOUT};
use super::files::{self, Planned, PlannedBody};
use crate::mirror::Answer;

/// The largest request head read here; a larger one goes to hyper (which refuses it). Every
/// request a file client sends (curl, apt, iPXE, casper's wget) fits many times over.
const MAX_HEAD: usize = 8192;
/// Headers parsed at most; more go to hyper.
const MAX_HEADERS: usize = 32;
/// Bytes handed to one sendfile call: large enough that a fast client costs few calls, small
/// enough that one connection does not hold its worker for long.
const SENDFILE_CHUNK: usize = 4 << 20;

/// How a connection left this path.
pub(super) enum Outcome {
    /// Closed: the client went away, asked to close, or failed a transfer.
    Closed,
    /// Hyper's from here on, with the bytes already read from it.
    Handover(TcpStream, Bytes),
}

/// Serves `stream`'s file requests until one is not for this path (then it is handed over),
/// the connection ends, or `stop` turns true between requests.
pub(super) async fn serve(
    mut stream: TcpStream,
    app: &Arc<App>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Outcome {
    let mut buffer = Vec::with_capacity(1024);
    loop {
        // The next head, within the time hyper would give it.
        let read = tokio::select! {
            read = tokio::time::timeout(HEADER_TIMEOUT, read_head(&mut stream, &mut buffer)) => read,
            _ = stop.wait_for(|stop| *stop) => return Outcome::Closed,
        };
        let head_len = match read {
            Ok(Ok(Some(len))) => len,
            // A head too large or not one httparse takes: hyper answers it (431, 400).
            Ok(Ok(None)) => return Outcome::Handover(stream, Bytes::from(buffer)),
            // Closed, reset, or silent for too long.
            Ok(Err(_)) | Err(_) => return Outcome::Closed,
        };
        let Some(request) = FileRequest::parse(&buffer[..head_len]) else {
            return Outcome::Handover(stream, Bytes::from(buffer));
        };
        let Some(planned) = answer(app, &request) else {
            return Outcome::Handover(stream, Bytes::from(buffer));
        };
        buffer.drain(..head_len);
        app.metrics.http_request(
            crate::metrics::Route::of(&request.path),
            planned.status.as_u16(),
        );
        // A HEAD is answered with the GET's head and no body, whatever the plan carries (an
        // error's text): bytes after it would be read as the next answer.
        let planned = if request.head {
            Planned {
                body: PlannedBody::Empty,
                ..planned
            }
        } else {
            planned
        };
        if respond(&mut stream, planned, request.close).await.is_err() || request.close {
            return Outcome::Closed;
        }
    }
}

/// Reads until `buffer` holds a complete request head: `Some(its length)`, or `None` when it
/// cannot be one this path parses (too large, malformed). An error when the connection ends.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<Option<usize>> {
    use tokio::io::AsyncReadExt;
    loop {
        if !buffer.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::Request::new(&mut headers).parse(buffer) {
                Ok(httparse::Status::Complete(len)) => return Ok(Some(len)),
                Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => {}
                _ => return Ok(None),
            }
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A request this path may answer.
struct FileRequest {
    head: bool,
    path: String,
    headers: HeaderMap,
    close: bool,
    files: Files,
}

/// Which files a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Files {
    /// `/images/…`: the image catalogue.
    Images,
    /// `/apt/…`: the mirror.
    Apt,
}

impl FileRequest {
    /// The request in `head` (a complete head) if it is a plain HTTP/1.1 GET or HEAD of a file
    /// route without a body.
    fn parse(head: &[u8]) -> Option<Self> {
        let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut raw);
        request.parse(head).ok()?;
        let head_only = match request.method? {
            "GET" => false,
            "HEAD" => true,
            _ => return None,
        };
        if request.version? != 1 {
            return None;
        }
        let target = request.path?;
        // The query is not a file's (axum ignores it on these routes too).
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        if path.contains('%') {
            return None;
        }
        let files = if path.starts_with("/images/") {
            Files::Images
        } else if path.starts_with("/apt/") {
            Files::Apt
        } else {
            return None;
        };
        let mut headers = HeaderMap::new();
        let mut close = false;
        for h in request.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            // A body, a chunked body, an upgrade or an expectation: hyper knows what to do.
            if name == header::TRANSFER_ENCODING
                || name == header::UPGRADE
                || name == header::EXPECT
                || (name == header::CONTENT_LENGTH && h.value != b"0")
            {
                return None;
            }
            if name == header::CONNECTION {
                close |= h
                    .value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            }
            headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
        }
        Some(Self {
            head: head_only,
            path: path.to_string(),
            headers,
            close,
            files,
        })
    }
}

/// The planned answer when the request names a file on disk; `None` leaves it to hyper (an
/// image path without a file part, a mirror file that needs a download or a revalidation).
fn answer(app: &App, request: &FileRequest) -> Option<Planned> {
    let method = if request.head {
        Method::HEAD
    } else {
        Method::GET
    };
    match request.files {
        Files::Images => {
            let relative = request.path.strip_prefix("/images/")?;
            (!relative.is_empty())
                .then(|| files::plan(&app.images, relative, &method, &request.headers))
        }
        Files::Apt => {
            let apt = app.apt.as_ref()?;
            let rest = request.path.strip_prefix("/apt/")?;
            let (prefix, path) = rest.split_once('/')?;
            // The first place that opens; a file in none of them (not fetched yet, or a
            // Release to revalidate) is hyper's, which asks the mirror.
            for place in apt.mirror.on_disk(prefix, path) {
                let (root, relative, cached) = match &place {
                    Answer::Static(relative) => (apt.statics.get(prefix)?, relative, false),
                    Answer::Cached(relative) => (&apt.cache, relative, true),
                    _ => continue,
                };
                let planned = files::plan(root, relative, &method, &request.headers);
                if planned.status != axum::http::StatusCode::NOT_FOUND {
                    if cached {
                        apt.mirror.served(relative);
                    }
                    return Some(planned);
                }
            }
            None
        }
    }
}

/// Writes `planned` to the client: the head, then the body (a file's through sendfile).
async fn respond(stream: &mut TcpStream, planned: Planned, close: bool) -> io::Result<()> {
    let Planned {
        status,
        headers,
        body,
    } = planned;
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    date(|now| head.extend_from_slice(now));
    head.extend_from_slice(b"\r\n");
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    match body {
        PlannedBody::Empty => stream.write_all(&head).await,
        PlannedBody::Memory(bytes) => {
            head.extend_from_slice(&bytes);
            stream.write_all(&head).await
        }
        PlannedBody::File { file, start, count } => {
            // Corked (nginx's tcp_nopush): the head goes out in the first full segment with
            // the file's first bytes, and no sendfile call ends in a short segment of its own
            // (TCP_NODELAY is on for the small answers). Uncorking sends what is left.
            let _ = socket2::SockRef::from(&*stream).set_tcp_cork(true);
            let sent = match stream.write_all(&head).await {
                Ok(()) => send_file(stream, &file, start, count).await,
                Err(e) => Err(e),
            };
            let _ = socket2::SockRef::from(&*stream).set_tcp_cork(false);
            sent
        }
    }
}

thread_local! {
    /// The `date` header's value and the second it names: formatted once a second per worker
    /// thread, as hyper does, not once per answer.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Calls `with` with the current HTTP date (RFC 9110 5.6.7).
fn date(with: impl FnOnce(&[u8])) {
    let now = std::time::SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        with(text.as_bytes());
    });
}

/// `count` bytes of `file` from `start` to `stream`, copied by the kernel. A file that ends
/// early (truncated while being sent) is an error: the connection is closed and the client
/// sees a short body, never one it could take for complete.
async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    start: u64,
    count: u64,
) -> io::Result<()> {
    let mut offset =
        i64::try_from(start).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut left = count;
    while left > 0 {
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(SENDFILE_CHUNK);
        let sent = stream
            .async_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile64(stream, file, Some(&mut offset), want)
                    .map_err(io::Error::from)
            })
            .await?;
        if sent == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= sent as u64;
    }
    Ok(())
}

/// A connection with bytes already read from it in front: what hyper reads first.
pub(super) struct Prefixed {
    prefix: Bytes,
    stream: TcpStream,
}

impl Prefixed {
    /// `stream`, whose next bytes are `prefix`.
    pub(super) fn new(stream: TcpStream, prefix: Bytes) -> Self {
        Self { prefix, stream }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> Option<FileRequest> {
        FileRequest::parse(head.as_bytes())
    }

    #[test]
    fn only_plain_file_gets_take_this_path() {
        let ok = parse("GET /images/u/vmlinuz HTTP/1.1\r\nHost: s\r\nRange: bytes=0-9\r\n\r\n")
            .expect("a plain GET");
        assert_eq!(ok.path, "/images/u/vmlinuz");
        assert!(!ok.head && !ok.close);
        assert_eq!(ok.headers[header::RANGE], "bytes=0-9");
        assert!(
            parse("HEAD /apt/ubuntu/pool/a.deb?x=1 HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .is_some_and(|r| r.head && r.close && r.path == "/apt/ubuntu/pool/a.deb")
        );
        for other in [
            // Another route, another method, HTTP/1.0, a percent-encoded path.
            "GET /boot.ipxe?mac=x HTTP/1.1\r\n\r\n",
            "POST /images/u/vmlinuz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.0\r\n\r\n",
            "GET /images/u/vm%6cinuz HTTP/1.1\r\n\r\n",
            // A body, however it is framed, or an upgrade: hyper reads or refuses it.
            "GET /images/u/vmlinuz HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert!(parse(other).is_none(), "{other:?}");
        }
    }
}
