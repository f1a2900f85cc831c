//! Writing a disk image to a disk: streamed from seed's `/disks/` over HTTP, hashed while it
//! is written, resumed with a byte range where a transfer broke off, checked against the
//! SHA-256 seed recorded when the image was registered, then flushed to the disk.
//!
//! Every byte is written (zeros too): the disk may hold an older system whose blocks must not
//! show through. A resumed transfer carries `If-Range` with the first response's ETag, so
//! an image replaced meanwhile restarts from byte 0 instead of mixing two images.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target cannot be opened, sized or written.
    #[error("{}: {source}", path.display())]
    Target {
        /// The disk or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The target is smaller than the image.
    #[error("{}: {size} bytes, the image needs {needed}", path.display())]
    TooSmall {
        /// The disk.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The image's.
        needed: u64,
    },
    /// seed could not be reached, or kept breaking off, past the retries.
    #[error("{url}: {why}")]
    Transfer {
        /// The image's URL.
        url: String,
        /// What happened last.
        why: String,
    },
    /// seed answered, but not with the image (404, a size that is not the image's).
    #[error("{url}: {why}")]
    Refused {
        /// The image's URL.
        url: String,
        /// What it answered.
        why: String,
    },
    /// The bytes written are not the registered image.
    #[error(
        "the image written has SHA-256 {actual}, not the registered {expected}: refused (a damaged image or transfer)"
    )]
    Checksum {
        /// What was registered.
        expected: String,
        /// What arrived.
        actual: String,
    },
}

/// What to write where.
#[derive(Debug, Clone)]
pub struct Job {
    /// The raw disk image (`http://seed/disks/<name>/disk.raw`).
    pub url: String,
    /// Its SHA-256 (lowercase hex) as seed recorded it.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The disk (or, in tests and benchmarks, a file).
    pub target: PathBuf,
}

/// How a write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
    /// Transfers it took (1 without a break).
    pub transfers: u32,
}

/// Transfers a write makes at most: the first and the resumptions after it broke off.
const MAX_TRANSFERS: u32 = 10;
/// The most bytes written between two reports, and the buffer a read fills.
const CHUNK: usize = 4 << 20;

/// Write `job`, calling `progress(bytes_done, total)` after each chunk.
pub fn write(
    job: &Job,
    client: &reqwest::blocking::Client,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Written, WriteError> {
    let target = open_target(&job.target, job.size)?;
    let target_err = |source| WriteError::Target {
        path: job.target.clone(),
        source,
    };
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut etag: Option<String> = None;
    let mut transfers = 0;
    let disk = DiskWriter::start(target);
    let mut writer_failed = false;
    let mut last_why = String::new();
    while done < job.size || transfers == 0 {
        if transfers == MAX_TRANSFERS {
            return Err(WriteError::Transfer {
                url: job.url.clone(),
                why: format!("broke off {transfers} times; last: {last_why}"),
            });
        }
        if transfers > 0 {
            // A moment before asking again: seed may be restarting.
            std::thread::sleep(Duration::from_millis(200 << transfers.min(5)));
        }
        transfers += 1;
        last_why.clear();
        let mut request = client.get(&job.url);
        if done > 0 {
            request = request.header("Range", format!("bytes={done}-"));
            if let Some(tag) = &etag {
                request = request.header("If-Range", tag.as_str());
            }
        }
        let mut response = match request.send() {
            Ok(response) => response,
            Err(e) => {
                last_why = crate::error_chain(&e);
                continue;
            }
        };
        let status = response.status();
        match status.as_u16() {
            206 if done > 0 => {
                // It must continue where the last one broke off, of the same image.
                let range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {done}-"))
                    || !range.ends_with(&format!("/{}", job.size))
                {
                    return Err(WriteError::Refused {
                        url: job.url.clone(),
                        why: format!(
                            "asked for bytes {done}- of {}, got `{}`",
                            job.size,
                            crate::net::printable(range)
                        ),
                    });
                }
            }
            200 => {
                if done > 0 {
                    // The image changed (or ranges are not served): start over.
                    tracing::warn!(url = %job.url, "the image changed during the write; starting over");
                    hasher = Sha256::new();
                    done = 0;
                }
                if let Some(len) = response.content_length()
                    && len != job.size
                {
                    return Err(WriteError::Refused {
                        url: job.url.clone(),
                        why: format!("{len} bytes, the registered image has {}", job.size),
                    });
                }
                etag = response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
            }
            _ => {
                let text: String = response
                    .text()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                let why = format!("{status}: {}", crate::net::printable(text.trim()));
                if status.is_server_error() {
                    last_why = why;
                    continue;
                }
                return Err(WriteError::Refused {
                    url: job.url.clone(),
                    why,
                });
            }
        }
        // Reads come in the sizes the connection delivers (tens of KiB); each write to the
        // disk is a whole chunk.
        let mut ended = false;
        while !ended {
            let mut buf = disk.buffer();
            let mut filled = 0;
            while filled < buf.len() {
                match response.read(&mut buf[filled..]) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) => {
                        last_why = format!("after {} bytes: {e}", done + filled as u64);
                        ended = true;
                        break;
                    }
                }
            }
            if done + filled as u64 > job.size {
                return Err(WriteError::Refused {
                    url: job.url.clone(),
                    why: format!("more than the image's {} bytes", job.size),
                });
            }
            hasher.update(&buf[..filled]);
            buf.truncate(filled);
            if !disk.write(done, buf) {
                // The writer stopped on an error: finish says which.
                writer_failed = true;
                break;
            }
            done += filled as u64;
            progress(done, job.size);
        }
        if writer_failed {
            break;
        }
        if done < job.size && last_why.is_empty() {
            last_why = format!("the transfer ended after {done} bytes");
        }
    }
    if writer_failed {
        return Err(target_err(disk.finish().err().unwrap_or_else(|| {
            std::io::Error::other("the disk writer stopped")
        })));
    }
    let actual = crate::cache::hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(&job.sha256) {
        return Err(WriteError::Checksum {
            expected: job.sha256.clone(),
            actual,
        });
    }
    let target = disk.finish().map_err(target_err)?;
    // On the disk before anything says it is written: a power cut after this keeps it.
    target.sync_all().map_err(target_err)?;
    Ok(Written {
        bytes: done,
        transfers,
    })
}

/// The disk side of a write: chunks are written on a thread of its own, so the disk takes
/// one chunk while the next arrives and is hashed. (Hashing and writing in turn measured
/// 0.84x of `curl | dd` in bench/agent.)
struct DiskWriter {
    chunks: Option<SyncSender<(u64, Vec<u8>)>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<std::io::Result<File>>>,
}

impl DiskWriter {
    fn start(file: File) -> Self {
        // Two chunks queued, one being written, one being filled: 16 MiB at most.
        let (chunks, queued) = sync_channel::<(u64, Vec<u8>)>(2);
        let (spare_tx, spare) = channel();
        let thread = std::thread::spawn(move || {
            for (at, buf) in queued {
                file.write_all_at(&buf, at)?;
                let _ = spare_tx.send(buf);
            }
            Ok(file)
        });
        Self {
            chunks: Some(chunks),
            spare,
            thread: Some(thread),
        }
    }

    /// A chunk-sized buffer to fill: one already written, or a new one.
    fn buffer(&self) -> Vec<u8> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    /// Queues `buf` to be written at `at`; false once the writer has stopped on an error.
    fn write(&self, at: u64, buf: Vec<u8>) -> bool {
        self.chunks
            .as_ref()
            .is_some_and(|chunks| chunks.send((at, buf)).is_ok())
    }

    /// Waits until every queued chunk is written: the file, or the first error.
    fn finish(mut self) -> std::io::Result<File> {
        drop(self.chunks.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(std::io::Error::other("the disk writer failed")),
        }
    }
}

/// The target opened for writing: a block device must hold the image; a regular file is
/// created if need be (tests, benchmarks), never truncated (a resumed write keeps its start).
fn open_target(path: &Path, needed: u64) -> Result<File, WriteError> {
    let err = |source| WriteError::Target {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .write(true)
        // A mistyped /dev/sdX must fail, not become a file in the ramdisk's /dev.
        .create(path.parent() != Some(Path::new("/dev")))
        .truncate(false)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
        // The end of a block device is its size (lseek SEEK_END), where metadata says 0.
        let size = {
            let mut f = &file;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(err)?
        };
        if size < needed {
            return Err(WriteError::TooSmall {
                path: path.to_path_buf(),
                size,
                needed,
            });
        }
    }
    Ok(file)
}

/// Bytes per second over `elapsed`.
pub fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (bytes as f64 / secs) as u64
    } else {
        0
    }
}

/// A progress reporter that says something at most every `every`.
pub struct Ticker {
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Ticker {
    /// A ticker that fires at most every `every`.
    pub fn new(every: Duration) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            every,
        }
    }

    /// Whether it is time to report; the average rate so far.
    pub fn tick(&mut self, bytes: u64) -> Option<u64> {
        let now = Instant::now();
        if now - self.last < self.every {
            return None;
        }
        self.last = now;
        Some(rate(bytes, now - self.started))
    }
}
