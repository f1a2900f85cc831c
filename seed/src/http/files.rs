//! Files from a directory over HTTP: kernels, initrds and ISOs. One byte range per request
//! (RFC 9110 14), HEAD, ETag and Last-Modified with their conditional requests, and a body that
//! is streamed a chunk at a time, so memory does not grow with the file or the client count.
//!
//! casper fetches the ISO with one plain GET; curl and iPXE resume with `Range: bytes=N-`.
//! Multi-range requests are answered with the whole file (RFC 9110 14.2 lets a server ignore
//! Range), which every client handles.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use crate::tree::{OpenError, Tree};

/// What a `Range` header asked for, resolved against a file of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No (usable) Range: the whole file.
    Full,
    /// Bytes `start..=end`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// A range that starts beyond the end (416).
    Unsatisfiable,
}

/// Resolve a `Range` header value against a file of `len` bytes. Syntax this does not handle
/// (other units, several ranges, garbage) means the whole file, never an error.
pub fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Range::Full,
        },
        // bytes=N-: from N to the end.
        (false, true) => match parse(first) {
            Some(start) if start < len => Range::Part {
                start,
                end: len - 1,
            },
            Some(_) => Range::Unsatisfiable,
            None => Range::Full,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= len {
                    Range::Unsatisfiable
                } else {
                    Range::Part {
                        start,
                        end: end.min(len - 1),
                    }
                }
            }
            _ => Range::Full,
        },
        (true, true) => Range::Full,
    }
}

/// A directory files are served from: a [`Tree`] (every open stays beneath it, one openat2
/// against a kept-open descriptor, bench/http) and the small files read in the last second.
#[derive(Debug)]
pub struct Root {
    tree: Tree,
    small: std::sync::Mutex<std::collections::HashMap<String, (Instant, Opened)>>,
}

impl Root {
    /// Serve from `path`; it need not exist yet (the image catalogue creates it on first add).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            tree: Tree::new(path),
            small: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A small file read less than [`SMALL_FRESH`] ago.
    fn cached(&self, relative: &str) -> Option<Opened> {
        let small = self.small.lock().ok()?;
        let (at, opened) = small.get(relative)?;
        (at.elapsed() < SMALL_FRESH).then(|| opened.clone())
    }

    fn remember(&self, relative: &str, opened: &Opened) {
        if let Ok(mut small) = self.small.lock() {
            if small.len() >= SMALL_CACHED {
                // Crude but bounded: start over rather than track what is least used.
                small.clear();
            }
            small.insert(relative.to_string(), (Instant::now(), opened.clone()));
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.tree.path()
    }

    /// Open `relative` for reading if it stays inside the root. A name that leads out is
    /// answered like a missing one: nothing about the outside shows.
    pub fn open(&self, relative: &str) -> std::io::Result<std::fs::File> {
        match self.tree.open(relative) {
            Ok(file) => Ok(file),
            Err(OpenError::Leaves | OpenError::Missing) => Err(not_found()),
            Err(OpenError::Io(e)) => Err(e),
        }
    }
}

fn not_found() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
}

/// A validator that changes whenever the file does: size and modification time, as nginx
/// builds it.
fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("\"{len:x}-{nanos:x}\"")
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, RFC 9110 13.1.2).
pub(super) fn none_match(value: &str, etag: &str) -> bool {
    value.trim() == "*"
        || value
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag)
}

/// An open file and what the response headers need from it.
#[derive(Debug, Clone)]
struct Opened {
    content: Content,
    len: u64,
    modified: SystemTime,
    content_type: &'static str,
}

/// Where a body comes from.
#[derive(Debug, Clone)]
enum Content {
    /// A small file, read whole (and cached for [`SMALL_FRESH`]).
    Memory(Bytes),
    /// A large file, streamed.
    File(Arc<std::fs::File>),
}

/// Resolve, open and stat.
fn open(root: &Root, relative: &str) -> Result<Opened, (StatusCode, String)> {
    if let Some(cached) = root.cached(relative) {
        return Ok(cached);
    }
    let not_found = |why: String| (StatusCode::NOT_FOUND, format!("{relative}: {why}\n"));
    let failed = |e: std::io::Error| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{relative}: {e}\n"),
        )
    };
    let file = root.open(relative).map_err(|e| not_found(e.to_string()))?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(not_found("not a file".into()));
    }
    let len = meta.len();
    let content = if len <= SMALL_FILE {
        // One read of a small file from the page cache is cheaper than a thread hop.
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0).map_err(failed)?;
        Content::Memory(Bytes::from(buf))
    } else {
        Content::File(Arc::new(file))
    };
    let opened = Opened {
        content,
        len,
        modified: meta.modified().unwrap_or(UNIX_EPOCH),
        content_type: content_type(Path::new(relative)),
    };
    if matches!(opened.content, Content::Memory(_)) {
        root.remember(relative, &opened);
    }
    Ok(opened)
}

/// `count` bytes of `file` from `start`, read ahead one chunk on tokio's blocking pool.
///
/// The chunk size follows the client: a chunk that hyper wrote out within [`FAST`] doubles the
/// next one (up to [`MAX_CHUNK`]), a slower one halves it (down to [`MIN_CHUNK`]). A fast client
/// on loopback or 10 GbE gets large reads and few syscalls; slow ones each hold two small
/// chunks. Chunks above the minimum come out of one process-wide budget ([`LARGE_BUDGET`]):
/// every client looks fast while the kernel's socket buffer fills (measured: 200 rate-limited
/// clients grew to 1 MiB chunks and 400 MiB resident before there was a budget; 39 MiB with it).
fn chunks(
    file: Arc<std::fs::File>,
    start: u64,
    count: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let reader = ChunkReader {
        file,
        pos: start,
        left: count,
        chunk: START_CHUNK,
        ahead: None,
        yielded: None,
    };
    futures_util::stream::try_unfold(reader, |mut r| async move {
        if let Some(at) = r.yielded {
            r.chunk = if at.elapsed() < FAST {
                (r.chunk * 2).min(MAX_CHUNK)
            } else {
                (r.chunk / 2).max(MIN_CHUNK)
            };
        }
        let Some(read) = r.ahead.take().or_else(|| r.read_next()) else {
            return Ok(None);
        };
        let bytes = read.await.map_err(std::io::Error::other)??;
        r.ahead = r.read_next();
        r.yielded = Some(Instant::now());
        Ok(Some((bytes, r)))
    })
}

/// Files up to this size are read whole on the request's own thread and kept in memory for
/// [`SMALL_FRESH`]: a request for one then costs no system call but its own recv and writev
/// (bench/http: 1 KiB files, 97k → see docs/BENCHMARKS.md).
const SMALL_FILE: u64 = 16 * 1024;
/// How long a small file is served from memory before it is looked at again (nginx's
/// `open_file_cache_valid` is the same idea). A replaced file is seen within this.
const SMALL_FRESH: Duration = Duration::from_secs(1);
/// At most this many small files are held (16 KiB each at most: 4 MiB).
const SMALL_CACHED: usize = 256;

/// First read of a body.
const START_CHUNK: usize = MIN_CHUNK;
/// Smallest read, for slow clients. Fixed 16 KiB reads gave 262 MB/s to one client on
/// loopback; growing to [`MAX_CHUNK`] gave 2.2 GB/s (release build, 1 GiB file, curl).
const MIN_CHUNK: usize = 16 * 1024;
/// Largest read, for fast clients; 1 MiB was no faster than 256 KiB and fragmented the heap.
const MAX_CHUNK: usize = 256 * 1024;
/// A chunk written out within this was taken by a fast client.
const FAST: Duration = Duration::from_millis(1);

struct ChunkReader {
    file: Arc<std::fs::File>,
    /// Next byte to read.
    pos: u64,
    /// Bytes not yet read.
    left: u64,
    /// Size of the next read.
    chunk: usize,
    /// The read of the next chunk, under way.
    ahead: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
    /// When the last chunk was handed to hyper.
    yielded: Option<Instant>,
}

impl ChunkReader {
    /// Start reading the next chunk, if any is left.
    fn read_next(&mut self) -> Option<tokio::task::JoinHandle<std::io::Result<Bytes>>> {
        if self.left == 0 {
            return None;
        }
        let wanted = usize::try_from(self.left.min(self.chunk as u64)).unwrap_or(self.chunk);
        let (n, reserved) = reserve(wanted);
        let (file, pos) = (Arc::clone(&self.file), self.pos);
        self.pos += n as u64;
        self.left -= n as u64;
        Some(tokio::task::spawn_blocking(move || {
            let mut chunk = Chunk {
                buf: vec![0u8; n],
                reserved,
            };
            // A file cut short under us ends the body early; the client sees a short read.
            file.read_exact_at(&mut chunk.buf, pos)
                .map(|()| Bytes::from_owner(chunk))
        }))
    }
}

/// Bytes of chunks larger than [`MIN_CHUNK`] alive at once, over all responses: enough for a
/// handful of clients at full speed.
const LARGE_BUDGET: usize = 4 * 1024 * 1024;
static LARGE_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// The size of the next read: `wanted` if it is small or fits the budget, else the minimum;
/// and how much of the budget it holds.
fn reserve(wanted: usize) -> (usize, usize) {
    if wanted <= MIN_CHUNK {
        return (wanted, 0);
    }
    let granted = LARGE_IN_USE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
        (used + wanted <= LARGE_BUDGET).then_some(used + wanted)
    });
    match granted {
        Ok(_) => (wanted, wanted),
        Err(_) => (MIN_CHUNK, 0),
    }
}

/// A chunk's bytes; gives its share of the budget back when hyper is done with it.
struct Chunk {
    buf: Vec<u8>,
    reserved: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.reserved > 0 {
            LARGE_IN_USE.fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

/// What the answer to a file request is, before it is written: status and headers, and where
/// the body comes from. hyper's path streams it ([`serve`]); the zero-copy path hands a file
/// body to sendfile(2) (`super::connection`).
#[derive(Debug)]
pub(super) struct Planned {
    /// The status.
    pub status: StatusCode,
    /// Every header but `date` (and `connection`, which the writer decides).
    pub headers: HeaderMap,
    /// The body.
    pub body: PlannedBody,
}

/// Where a planned body comes from.
#[derive(Debug)]
pub(super) enum PlannedBody {
    /// None (HEAD, 304, 416).
    Empty,
    /// These bytes (a small file, an error message).
    Memory(Bytes),
    /// `count` bytes of `file` from `start`.
    File {
        /// The open file.
        file: Arc<std::fs::File>,
        /// First byte.
        start: u64,
        /// How many.
        count: u64,
    },
}

impl Planned {
    fn text(status: StatusCode, message: String) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(message.len()));
        Self {
            status,
            headers,
            body: PlannedBody::Memory(Bytes::from(message)),
        }
    }
}

/// Serve the file `relative` under `root` for `method` (GET or HEAD) and the request headers.
pub async fn serve(root: &Root, relative: &str, method: &Method, headers: &HeaderMap) -> Response {
    plan(root, relative, method, headers).into_response()
}

impl Planned {
    /// How many bytes the body holds.
    pub(super) fn body_len(&self) -> u64 {
        match &self.body {
            PlannedBody::Empty => 0,
            PlannedBody::Memory(bytes) => bytes.len() as u64,
            PlannedBody::File { count, .. } => *count,
        }
    }

    /// hyper's response: the body streamed a chunk at a time.
    pub(super) fn into_response(self) -> Response {
        let Planned {
            status,
            headers,
            body,
        } = self;
        let body = match body {
            PlannedBody::Empty => Body::empty(),
            PlannedBody::Memory(bytes) => Body::from(bytes),
            PlannedBody::File { file, start, count } => {
                Body::from_stream(chunks(file, start, count))
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// The answer to a request for `relative` under `root`: one range (RFC 9110 14), HEAD, ETag and
/// Last-Modified with their conditional requests.
pub(super) fn plan(root: &Root, relative: &str, method: &Method, headers: &HeaderMap) -> Planned {
    // Resolving, opening and stat'ing run on this thread: they are dentry-cache lookups, and a
    // trip to the blocking pool halved the small-file throughput (bench/http).
    let Opened {
        content,
        len,
        modified,
        content_type,
    } = match open(root, relative) {
        Ok(opened) => opened,
        Err((status, message)) => return Planned::text(status, message),
    };
    let tag = etag(len, modified);
    let last_modified = httpdate::fmt_http_date(modified);
    let header_str = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let mut out = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            out.insert(name, value);
        }
    };
    put(header::ETAG, tag.clone());
    put(header::LAST_MODIFIED, last_modified);
    put(header::ACCEPT_RANGES, "bytes".into());
    let empty = |status: StatusCode, headers: HeaderMap| Planned {
        status,
        headers,
        body: PlannedBody::Empty,
    };

    // RFC 9110 13.2.2: If-None-Match wins over If-Modified-Since.
    let not_modified = match header_str(header::IF_NONE_MATCH) {
        Some(list) => none_match(list, &tag),
        None => header_str(header::IF_MODIFIED_SINCE)
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .is_some_and(|since| whole_seconds(modified) <= whole_seconds(since)),
    };
    if not_modified {
        return empty(StatusCode::NOT_MODIFIED, out);
    }
    // If-Range: the range only if the client's copy is still this file (RFC 9110 13.1.5).
    let range_applies = match header_str(header::IF_RANGE) {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => v == tag,
        Some(v) => {
            httpdate::parse_http_date(v).is_ok_and(|d| whole_seconds(d) == whole_seconds(modified))
        }
    };
    let range = match header_str(header::RANGE) {
        Some(v) if range_applies => parse_range(v, len),
        _ => Range::Full,
    };
    let (status, start, count) = match range {
        Range::Full => (StatusCode::OK, 0, len),
        Range::Part { start, end } => {
            put(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Range::Unsatisfiable => {
            put(header::CONTENT_RANGE, format!("bytes */{len}"));
            // No body, and says so (hyper would add it; the zero-copy path writes what is here).
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            return empty(StatusCode::RANGE_NOT_SATISFIABLE, out);
        }
    };
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if method == Method::HEAD {
        return empty(status, out);
    }
    let body = match content {
        Content::Memory(bytes) => {
            PlannedBody::Memory(bytes.slice(start as usize..(start + count) as usize))
        }
        Content::File(file) => PlannedBody::File { file, start, count },
    };
    Planned {
        status,
        headers: out,
        body,
    }
}

/// HTTP dates have one-second resolution; compare at that.
fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("iso") => "application/x-iso9660-image",
        Some("json") => "application/json",
        Some("txt" | "ipxe") => "text/plain; charset=utf-8",
        Some("gz") => "application/gzip",
        Some("xz") => "application/x-xz",
        _ => "application/octet-stream",
    }
}

/// Bytes per read of a growing file.
const GROWING_CHUNK: u64 = 64 << 10;

/// A fetch in progress ([`crate::cache::Growing`]) as a response body, streamed as it grows:
/// waits until the source answered (its size, when it gave one, is returned for
/// `Content-Length`), then every byte as it is flushed to the temporary file. A fetch that
/// fails before its first byte is the error; one that fails later, also one whose bytes all
/// arrived but did not verify, ends the body with an error, so the connection is aborted and
/// the client never takes it for complete. With a `Content-Length` the last byte is held back
/// until the file verified: once the announced length went out, an abort came too late (curl
/// reported a corrupt blob as a clean 200), so a failed verification leaves the client one
/// byte short. `head_only`: the size, and an empty body.
pub(super) async fn growing(
    mut download: crate::cache::Growing,
    head_only: bool,
) -> Result<(Option<u64>, Body), crate::cache::CacheError> {
    let first = download
        .progress
        .wait_for(|p| p.total.is_some() || p.written > 0 || p.end.is_some())
        .await
        .map(|p| p.clone())
        .map_err(|_| crate::cache::CacheError::Source("the fetch ended without a result".into()))?;
    if let Some(Err(e)) = first.end
        && first.written == 0
    {
        return Err(e);
    }
    if head_only {
        return Ok((first.total, Body::empty()));
    }
    let length = first.total;
    let stream = futures_util::stream::unfold(
        (download, 0u64, false),
        move |(mut d, sent, over)| async move {
            if over {
                return None;
            }
            loop {
                let p = d.progress.borrow_and_update().clone();
                // What may go out now: everything written, but the last byte of a framed
                // length only once the file verified.
                let ready = match (length, &p.end) {
                    (Some(total), None | Some(Err(_))) => p.written.min(total.saturating_sub(1)),
                    _ => p.written,
                };
                if sent < ready {
                    let n = (ready - sent).min(GROWING_CHUNK);
                    let file = Arc::clone(&d.file);
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; n as usize];
                        file.read_exact_at(&mut buf, sent).map(|()| buf)
                    })
                    .await;
                    return Some(match read {
                        Ok(Ok(buf)) => (Ok(Bytes::from(buf)), (d, sent + n, false)),
                        Ok(Err(e)) => (Err(e), (d, sent, true)),
                        Err(e) => (Err(std::io::Error::other(e.to_string())), (d, sent, true)),
                    });
                }
                match p.end {
                    Some(Ok(())) => return None,
                    Some(Err(e)) => {
                        return Some((Err(std::io::Error::other(e.to_string())), (d, sent, true)));
                    }
                    None => {
                        if d.progress.changed().await.is_err() {
                            let gone = std::io::Error::other("the download ended without a result");
                            return Some((Err(gone), (d, sent, true)));
                        }
                    }
                }
            }
        },
    );
    Ok((first.total, Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_as_rfc_9110_says() {
        let len = 1000;
        let part = |start, end| Range::Part { start, end };
        assert_eq!(parse_range("bytes=0-99", len), part(0, 99));
        assert_eq!(parse_range("bytes=900-", len), part(900, 999));
        assert_eq!(parse_range("bytes=-100", len), part(900, 999));
        assert_eq!(parse_range("bytes=-5000", len), part(0, 999));
        assert_eq!(parse_range("bytes=990-5000", len), part(990, 999));
        assert_eq!(parse_range("bytes=1000-", len), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-1001", len), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", len), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Range::Unsatisfiable);
        // Not understood: the whole file.
        assert_eq!(parse_range("bytes=5-1", len), Range::Full);
        assert_eq!(parse_range("bytes=0-1,5-6", len), Range::Full);
        assert_eq!(parse_range("items=0-1", len), Range::Full);
        assert_eq!(parse_range("bytes=x-", len), Range::Full);
        assert_eq!(parse_range("bytes=-", len), Range::Full);
    }

    #[test]
    fn paths_stay_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        std::fs::create_dir_all(root.join("noble")).unwrap();
        std::fs::write(root.join("noble/vmlinuz"), b"k").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("noble/out")).unwrap();
        std::os::unix::fs::symlink("vmlinuz", root.join("noble/in")).unwrap();
        let root = Root::new(root);
        assert!(root.open("noble/vmlinuz").is_ok());
        assert!(root.open("noble/in").is_ok(), "a symlink inside is fine");
        for bad in [
            "../secret",
            "/etc/passwd",
            "noble/../../secret",
            "noble/out",
            "a\0b",
            "",
        ] {
            assert!(root.open(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(none_match("\"a\"", "\"a\""));
        assert!(none_match("W/\"a\", \"b\"", "\"a\""));
        assert!(none_match("*", "\"a\""));
        assert!(!none_match("\"b\"", "\"a\""));
    }
}
