//! One HTTP/1.1 connection, served without copying files through user space.
//!
//! hyper writes every body from user space: an image or a mirrored package is read into a
//! buffer and copied out again, and that copy kept seed below nginx (which hands the file to
//! the kernel with sendfile) on large files and on the mirror's packages (bench/http). So
//! seed reads request heads itself (httparse, hyper's parser): a plain HTTP/1.1 GET or HEAD
//! without a body is answered here, a file on disk (`/images/…`, a mirror file) with the
//! headers `files::plan` decides and a body the kernel copies from the page cache to the
//! socket, any other route by the router itself, its response written here (with a length,
//! or chunked). So a connection that asks for a boot script and then a kernel (iPXE), or a
//! Release and then packages (apt pipelines one connection per host), still gets its files
//! by sendfile. The first request that is anything else (a body, HTTP/1.0, an upgrade, an
//! expectation, a head that does not parse or is too large) and every request after it are
//! hyper's: the connection is handed over with the bytes already read in front of it
//! ([`Prefixed`]), and hyper answers it as it would have from the start.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service as _;

use super::app::{App, HEADER_TIMEOUT};
use super::files::{self, Planned, PlannedBody};
use crate::metrics::Route;
use crate::mirror::Answer;
use crate::registry::reference::{Endpoint, endpoint};

/// The largest request head read here; a larger one goes to hyper (which refuses it). Every
/// request a file client sends (curl, apt, iPXE, casper's wget) fits many times over.
const MAX_HEAD: usize = 8192;
/// Headers parsed at most; more go to hyper.
const MAX_HEADERS: usize = 32;
/// Bytes handed to one sendfile call: large enough that a fast client costs few calls, small
/// enough that one connection does not hold its worker for long.
const SENDFILE_CHUNK: usize = 4 << 20;
/// A routed body's first frame this small goes out in one write with the head.
const COALESCE: usize = 16 << 10;

/// How a connection left this path.
pub(super) enum Outcome {
    /// Closed: the client went away, asked to close, or failed a transfer.
    Closed,
    /// Hyper's from here on, with the bytes already read from it.
    Handover(TcpStream, Bytes),
}

/// Serves `stream`'s bodiless requests until one is not (then it is handed over), the
/// connection ends, or `stop` turns true between requests.
pub(super) async fn serve(
    mut stream: TcpStream,
    app: &Arc<App>,
    router: &Router,
    scope: super::Scope,
    peer: SocketAddr,
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
        let Some(request) = Bodiless::parse(&buffer[..head_len]) else {
            return Outcome::Handover(stream, Bytes::from(buffer));
        };
        buffer.drain(..head_len);
        let route = Route::of(&request.path);
        // The registry's own port serves its blobs from disk, nothing else.
        let on_disk = match scope {
            super::Scope::Registry if request.files != Some(Files::Registry) => None,
            _ => answer(app, &request),
        };
        let written = match on_disk {
            Some(planned) => {
                app.metrics.http_request(route, planned.status.as_u16());
                // A HEAD is answered with the GET's head and no body, whatever the plan
                // carries (an error's text): bytes after it would be read as the next answer.
                let planned = if request.head {
                    Planned {
                        body: PlannedBody::Empty,
                        ..planned
                    }
                } else {
                    planned
                };
                let file_bytes = match &planned.body {
                    PlannedBody::File { count, .. } => *count,
                    _ => 0,
                };
                let written = respond(&mut stream, planned, request.close).await;
                if written.is_ok() {
                    app.metrics.http_sendfile(file_bytes);
                }
                written
            }
            None => {
                let response = routed(router, peer, &request).await;
                app.metrics.http_request(route, response.status().as_u16());
                write_response(&mut stream, response, request.head, request.close).await
            }
        };
        match written {
            Ok(close) if !close && !request.close => {}
            _ => return Outcome::Closed,
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

/// [`crate::fuzzing::http`]: `data` as a request head, and what this path would make of it.
pub(super) fn fuzz_head(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Ok(httparse::Status::Complete(len)) = httparse::Request::new(&mut headers).parse(data)
        && let Some(request) = Bodiless::parse(&data[..len])
    {
        let _ = Route::of(&request.path);
    }
}

/// A request this path answers: an HTTP/1.1 GET or HEAD without a body.
struct Bodiless {
    head: bool,
    /// The request target as sent (path and query).
    uri: Uri,
    /// Its path.
    path: String,
    headers: HeaderMap,
    close: bool,
    /// Which files it names, if it may be answered from disk.
    files: Option<Files>,
}

/// Which files a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Files {
    /// `/images/…`: the image catalogue.
    Images,
    /// `/disks/…`: the disk images.
    Disks,
    /// `/apt/…`: the mirror.
    Apt,
    /// `/v2/…`: the container registry (its blobs).
    Registry,
}

impl Bodiless {
    /// The request in `head` (a complete head) if it is a plain HTTP/1.1 GET or HEAD without a
    /// body.
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
        // Origin form only (RFC 9112 3.2.1); hyper answers the others.
        if !target.starts_with('/') {
            return None;
        }
        let uri = Uri::try_from(target).ok()?;
        // The query is not a file's (axum ignores it on these routes too).
        let path = uri.path().to_string();
        // A percent-encoded path is the router's to decode.
        let files = if path.contains('%') {
            None
        } else if path.starts_with("/images/") {
            Some(Files::Images)
        } else if path.starts_with("/disks/") {
            Some(Files::Disks)
        } else if path.starts_with("/apt/") {
            Some(Files::Apt)
        } else if path.starts_with("/v2/") && path.contains("/blobs/") {
            Some(Files::Registry)
        } else {
            None
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
            uri,
            path,
            headers,
            close,
            files,
        })
    }
}

/// The planned answer when the request names a file on disk; `None` leaves it to the router
/// (an image path without a file part, a mirror file that needs a download or a
/// revalidation, any other route).
fn answer(app: &App, request: &Bodiless) -> Option<Planned> {
    let method = if request.head {
        Method::HEAD
    } else {
        Method::GET
    };
    match request.files? {
        Files::Images => {
            let relative = request.path.strip_prefix("/images/")?;
            (!relative.is_empty())
                .then(|| files::plan(&app.images, relative, &method, &request.headers))
        }
        Files::Disks => {
            let relative = request.path.strip_prefix("/disks/")?;
            (!relative.is_empty())
                .then(|| files::plan(&app.disks, relative, &method, &request.headers))
        }
        Files::Apt => {
            let apt = app.apt.as_ref()?;
            let rest = request.path.strip_prefix("/apt/")?;
            let (prefix, path) = rest.split_once('/')?;
            // The first place that opens; a file in none of them (not fetched yet, or a
            // Release to revalidate) is the router's, which asks the mirror.
            for place in apt.mirror.on_disk(prefix, path) {
                let (root, relative, cached) = match &place {
                    Answer::Static(relative) => (apt.statics.get(prefix)?, relative, false),
                    Answer::Cached(relative) => (&apt.cache, relative, true),
                    _ => continue,
                };
                let planned = files::plan(root, relative, &method, &request.headers);
                if planned.status != StatusCode::NOT_FOUND {
                    if cached {
                        apt.mirror.served(relative);
                    }
                    return Some(planned);
                }
            }
            None
        }
        Files::Registry => {
            let rest = request.path.strip_prefix("/v2/")?;
            let Endpoint::Blob(name, digest) = endpoint(rest) else {
                return None;
            };
            // A refusal is the router's to write (the same function answers there).
            let planned =
                super::registry::blob_plan(app, &name, &digest, &method, &request.headers).ok()?;
            if planned.status.is_success() && !request.head {
                app.metrics
                    .registry_pull(crate::metrics::Pulled::Blob, planned.body_len());
            }
            Some(planned)
        }
    }
}

/// The router's response to `request` (as hyper's service would ask it: with the peer's
/// address, which the boot script and the nodes' routes check).
async fn routed(router: &Router, peer: SocketAddr, request: &Bodiless) -> axum::response::Response {
    let mut http = axum::http::Request::new(Body::empty());
    *http.method_mut() = if request.head {
        Method::HEAD
    } else {
        Method::GET
    };
    *http.uri_mut() = request.uri.clone();
    *http.version_mut() = Version::HTTP_11;
    *http.headers_mut() = request.headers.clone();
    http.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    match router.clone().call(http).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The status line and headers of an answer, with `date` (and `connection: close`) added.
fn head_bytes(status: StatusCode, headers: &HeaderMap, close: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        head.extend_from_slice(b"date: ");
        date(|now| head.extend_from_slice(now));
        head.extend_from_slice(b"\r\n");
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes a routed response: its head, then its body with the length it declares (or its
/// exact size), else chunked (RFC 9112 7.1). A body that fails, or that is not the length it
/// declared, ends the connection: the client sees a short answer, never one it could take for
/// complete. `Ok(true)` when the connection must close after it.
async fn write_response(
    stream: &mut TcpStream,
    response: axum::response::Response,
    head_only: bool,
    close: bool,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    let status = parts.status;
    let close = close
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    // RFC 9110 6.4.1: no content in these, whatever the body says.
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    headers.remove(header::TRANSFER_ENCODING);
    let mut chunked = false;
    if !bodiless && declared.is_none() {
        match body.size_hint().exact() {
            Some(n) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                headers.insert(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
                chunked = true;
            }
        }
    }
    let mut out = head_bytes(status, &headers, close);
    if bodiless {
        stream.write_all(&out).await?;
        return Ok(close);
    }
    let length = declared.or(body.size_hint().exact());
    let mut frames = body.into_data_stream();
    let mut sent = 0u64;
    loop {
        // What is ready goes out with the head; a body that is not ready yet (a download
        // still arriving) does not hold the head back.
        let next = match frames.next().now_or_never() {
            Some(next) => next,
            None => {
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    out.clear();
                }
                frames.next().await
            }
        };
        let data = match next {
            None => break,
            Some(Ok(data)) => data,
            Some(Err(e)) => {
                // What was decided goes out, short: the client sees the answer break off.
                let _ = stream.write_all(&out).await;
                return Err(io::Error::other(e));
            }
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            let _ = stream.write_all(&out).await;
            return Err(io::Error::other("a body longer than its content-length"));
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if out.len() + data.len() <= COALESCE {
            out.extend_from_slice(&data);
        } else {
            stream.write_all(&out).await?;
            out.clear();
            stream.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if length.is_some_and(|n| sent != n) {
        let _ = stream.write_all(&out).await;
        return Err(io::Error::other("a body shorter than its content-length"));
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    Ok(close)
}

/// Writes `planned` to the client: the head, then the body (a file's through sendfile).
/// `Ok(false)`: the connection may carry the next request.
async fn respond(stream: &mut TcpStream, planned: Planned, close: bool) -> io::Result<bool> {
    let Planned {
        status,
        headers,
        body,
    } = planned;
    let mut head = head_bytes(status, &headers, close);
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
    .map(|()| close)
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

    fn parse(head: &str) -> Option<Bodiless> {
        Bodiless::parse(head.as_bytes())
    }

    #[test]
    fn only_bodiless_http11_gets_and_heads_take_this_path() {
        let ok = parse("GET /images/u/vmlinuz HTTP/1.1\r\nHost: s\r\nRange: bytes=0-9\r\n\r\n")
            .expect("a plain GET");
        assert_eq!(ok.path, "/images/u/vmlinuz");
        assert!(!ok.head && !ok.close);
        assert_eq!(ok.headers[header::RANGE], "bytes=0-9");
        assert!(
            parse("HEAD /apt/ubuntu/pool/a.deb?x=1 HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .is_some_and(|r| r.head && r.close && r.path == "/apt/ubuntu/pool/a.deb")
        );
        // Another route: the router's, on this path; a percent-encoded path is not a file's.
        let script = parse("GET /boot.ipxe?mac=x HTTP/1.1\r\n\r\n").expect("a routed GET");
        assert_eq!((script.path.as_str(), script.files), ("/boot.ipxe", None));
        assert_eq!(script.uri.query(), Some("mac=x"));
        assert_eq!(
            parse("GET /images/u/vm%6cinuz HTTP/1.1\r\n\r\n").map(|r| r.files),
            Some(None)
        );
        for other in [
            // Another method, HTTP/1.0, a target that is not a path.
            "POST /images/u/vmlinuz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.0\r\n\r\n",
            "GET http://seed/images/u/vmlinuz HTTP/1.1\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            // A body, however it is framed, or an upgrade: hyper reads or refuses it.
            "GET /images/u/vmlinuz HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /images/u/vmlinuz HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert!(parse(other).is_none(), "{other:?}");
        }
    }

    /// What `write_response` puts on the wire for `response`, and whether it returned Ok.
    async fn wire(response: axum::response::Response, head_only: bool) -> (String, bool) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let ok = write_response(&mut server, response, head_only, false)
            .await
            .is_ok();
        drop(server);
        let mut text = Vec::new();
        client.read_to_end(&mut text).await.unwrap();
        (String::from_utf8_lossy(&text).into_owned(), ok)
    }

    fn streamed(parts: Vec<Result<&'static str, &'static str>>) -> axum::response::Response {
        let stream = futures_util::stream::iter(parts.into_iter().map(|p| {
            p.map(|s: &'static str| Bytes::from_static(s.as_bytes()))
                .map_err(io::Error::other)
        }));
        axum::response::Response::new(Body::from_stream(stream))
    }

    #[tokio::test]
    async fn routed_bodies_are_framed_by_length_or_chunked_and_a_failure_is_never_complete() {
        // A body of known size: content-length, the bytes, nothing else.
        let (text, ok) = wire(axum::response::Response::new(Body::from("hello")), false).await;
        assert!(ok);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("content-length: 5") && head.contains("date: "),
            "{head}"
        );
        assert_eq!(body, "hello");
        // A stream of unknown size: chunked (RFC 9112 7.1), ended by the last chunk.
        let (text, ok) = wire(streamed(vec![Ok("abc"), Ok(""), Ok("de")]), false).await;
        assert!(ok);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert_eq!(body, "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        // A stream that fails: no last chunk, and the connection is to be closed.
        let (text, ok) = wire(streamed(vec![Ok("abc"), Err("upstream gone")]), false).await;
        assert!(!ok);
        assert!(text.ends_with("3\r\nabc\r\n"), "{text:?}");
        // A declared length the body does not reach: never sent as complete.
        let mut short = streamed(vec![Ok("abc")]);
        short
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(10u64));
        let (text, ok) = wire(short, false).await;
        assert!(!ok && text.ends_with("abc"), "{text:?}");
        // A HEAD and a 304: the head alone, with the length the GET would have.
        let mut head = axum::response::Response::new(Body::empty());
        head.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(300u64));
        let (text, ok) = wire(head, true).await;
        assert!(ok);
        assert!(text.contains("content-length: 300\r\n") && text.ends_with("\r\n\r\n"));
        let mut not_modified = axum::response::Response::new(Body::from("ignored"));
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        let (text, ok) = wire(not_modified, false).await;
        assert!(
            ok && text.ends_with("\r\n\r\n") && !text.contains("ignored"),
            "{text:?}"
        );
    }
}
