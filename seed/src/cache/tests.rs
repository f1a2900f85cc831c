//! The cache's guarantees, in process: whole and verified or absent, one fetch per file,
//! readable while it grows, nothing left by a failure, least recently used evicted first.

use super::*;
use std::sync::atomic::AtomicUsize;

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn open(dir: &Path) -> Arc<Cache> {
    Cache::open(dir, 1 << 30, vec![PathBuf::from("blobs")], "test").unwrap()
}

/// Files left under `.tmp`.
fn temporaries(cache: &Cache) -> usize {
    std::fs::read_dir(cache.dir().join(".tmp")).unwrap().count()
}

async fn end(mut growing: Growing) -> Result<(), CacheError> {
    let progress = growing
        .progress
        .wait_for(|p| p.end.is_some())
        .await
        .unwrap()
        .clone();
    progress.end.unwrap()
}

#[tokio::test]
async fn a_verified_fill_is_committed_and_read_while_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let body = b"a blob of some bytes".to_vec();
    let expect = Expect {
        size: Some(body.len() as u64),
        sha256: sha256_hex(&body),
    };
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let body2 = body.clone();
    let Entry::Growing(mut growing) = cache
        .fill("blobs/a", Some(expect), move |mut filler| async move {
            filler.write(&body2[..5]).await?;
            let _ = wait.await;
            filler.write(&body2[5..]).await?;
            Ok(filler)
        })
        .unwrap()
    else {
        panic!("a file not in the cache must be fetched");
    };
    // The first five bytes are readable before the rest arrives, and the file is not in the
    // cache yet.
    growing.progress.wait_for(|p| p.written == 5).await.unwrap();
    let mut first = [0u8; 5];
    std::os::unix::fs::FileExt::read_exact_at(&*growing.file, &mut first, 0).unwrap();
    assert_eq!(&first, b"a blo");
    assert!(!cache.contains("blobs/a"));
    assert_eq!(growing.progress.borrow().total, Some(body.len() as u64));
    go_on.send(()).unwrap();
    end(growing).await.unwrap();
    assert_eq!(std::fs::read(cache.path("blobs/a")).unwrap(), body);
    assert_eq!(temporaries(&cache), 0);
    // Asked again: from the cache, no fetch.
    let again = cache
        .fill("blobs/a", None, |_| async { panic!("fetched twice") })
        .unwrap();
    assert!(matches!(again, Entry::Cached(key) if key == "blobs/a"));
}

#[tokio::test]
async fn a_file_that_is_not_what_was_expected_is_refused_and_left_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let expect = Expect {
        size: Some(4),
        sha256: sha256_hex(b"good"),
    };
    let Entry::Growing(growing) = cache
        .fill("blobs/b", Some(expect.clone()), |mut filler| async move {
            filler.write(b"evil").await?;
            Ok(filler)
        })
        .unwrap()
    else {
        panic!("not cached yet");
    };
    match end(growing).await {
        Err(CacheError::Mismatch {
            size,
            sha256,
            expected,
            ..
        }) => {
            assert_eq!(size, 4);
            assert_eq!(sha256, sha256_hex(b"evil"));
            assert_eq!(expected, expect);
        }
        other => panic!("a corrupted file must be refused, got {other:?}"),
    }
    assert!(!cache.contains("blobs/b"));
    assert_eq!(temporaries(&cache), 0);
    // A short file with the right prefix is refused by its size too.
    let Entry::Growing(growing) = cache
        .fill("blobs/b", Some(expect), |mut filler| async move {
            filler.write(b"goo").await?;
            Ok(filler)
        })
        .unwrap()
    else {
        panic!("not cached yet");
    };
    assert!(matches!(
        end(growing).await,
        Err(CacheError::Mismatch { .. })
    ));
    assert!(!cache.contains("blobs/b"));
}

#[tokio::test]
async fn a_source_that_fails_midway_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let Entry::Growing(growing) = cache
        .fill("blobs/c", None, |mut filler| async move {
            filler.write(b"half").await?;
            Err(CacheError::Source("the upstream went away".into()))
        })
        .unwrap()
    else {
        panic!("not cached yet");
    };
    assert!(matches!(end(growing).await, Err(CacheError::Source(_))));
    assert!(!cache.contains("blobs/c"));
    assert_eq!(temporaries(&cache), 0);
}

#[tokio::test]
async fn concurrent_asks_share_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let fetches = Arc::new(AtomicUsize::new(0));
    let (go_on, wait) = tokio::sync::watch::channel(false);
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let (fetches, mut wait) = (Arc::clone(&fetches), wait.clone());
        let entry = cache
            .fill("blobs/d", None, move |mut filler| async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let _ = wait.wait_for(|go| *go).await;
                filler.write(b"shared").await?;
                Ok(filler)
            })
            .unwrap();
        match entry {
            Entry::Growing(growing) => waiters.push(growing),
            Entry::Cached(_) => panic!("cached before the fetch ended"),
        }
    }
    go_on.send(true).unwrap();
    for growing in waiters {
        end(growing).await.unwrap();
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(std::fs::read(cache.path("blobs/d")).unwrap(), b"shared");
}

#[tokio::test]
async fn flights_run_work_once_for_all_who_wait() {
    let flights: Flights<CacheError> = Flights::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let (go_on, wait) = tokio::sync::watch::channel(false);
    let mut calls = Vec::new();
    for _ in 0..10 {
        let (runs, mut wait) = (Arc::clone(&runs), wait.clone());
        calls.push(flights.once("k".into(), async move {
            runs.fetch_add(1, Ordering::SeqCst);
            let _ = wait.wait_for(|go| *go).await;
            Err(CacheError::Missing("gone".into()))
        }));
    }
    // join! polls every call (each joins the one flight) before it lets the work end.
    let (results, ()) = tokio::join!(futures_util::future::join_all(calls), async {
        go_on.send(true).unwrap();
    });
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(CacheError::Missing(_))))
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // A later call runs again.
    flights.once("k".into(), async { Ok(()) }).await.unwrap();
}

#[test]
fn opening_removes_what_a_crash_left_and_a_dropped_filler_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".tmp")).unwrap();
    // Beyond the kernel's largest pid_max (2^22): no process has it.
    std::fs::write(dir.path().join(".tmp/fill-99999999-0"), b"half a file").unwrap();
    std::fs::write(dir.path().join(".tmp/not-ours"), b"?").unwrap();
    let cache = open(dir.path());
    assert_eq!(temporaries(&cache), 0);
    // A running process's temporary stays (`seed registry import` beside `seed serve`).
    let filling = cache.filler("x").unwrap();
    let again = open(dir.path());
    assert_eq!(temporaries(&again), 1);
    drop(filling);
    assert_eq!(temporaries(&cache), 0);
    let filler = cache.filler("x").unwrap();
    assert_eq!(temporaries(&cache), 1);
    drop(filler);
    assert_eq!(temporaries(&cache), 0);
}

#[test]
fn a_prune_removes_least_recently_used_evictable_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path(), 3 << 20, vec![PathBuf::from("blobs")], "test").unwrap();
    let mib = vec![0u8; 1 << 20];
    let old = SystemTime::now() - Duration::from_secs(3600);
    for (name, age) in [
        ("blobs/old", 3),
        ("blobs/mid", 2),
        ("blobs/new", 1),
        ("index/keep", 4),
    ] {
        let path = cache.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &mib).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(old - Duration::from_secs(age * 60))
            .unwrap();
    }
    // 4 MiB in a 3 MiB cache: down to 2.7 MiB takes the two oldest evictable files; the
    // older index file is not evictable.
    assert_eq!(cache.prune(), 2);
    assert!(!cache.contains("blobs/old") && !cache.contains("blobs/mid"));
    assert!(cache.contains("blobs/new") && cache.contains("index/keep"));
}

#[test]
fn a_use_moves_the_lru_clock_at_most_once_a_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    let path = cache.path("blobs/e");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"e").unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    let set = |at| {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap()
    };
    set(old);
    cache.used("blobs/e");
    let moved = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert!(
        moved > old + Duration::from_secs(3000),
        "the first use moves it"
    );
    set(old);
    cache.used("blobs/e");
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        old,
        "a second use within the resolution does not"
    );
}

#[test]
fn meta_is_stored_beside_a_key_and_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path());
    assert_eq!(
        cache.meta::<Vec<String>>("ubuntu/dists/noble/InRelease"),
        None
    );
    cache
        .set_meta("ubuntu/dists/noble/InRelease", &vec!["etag".to_string()])
        .unwrap();
    cache
        .set_meta("ubuntu/dists/noble/InRelease", &vec!["etag2".to_string()])
        .unwrap();
    assert_eq!(
        cache.meta::<Vec<String>>("ubuntu/dists/noble/InRelease"),
        Some(vec!["etag2".to_string()])
    );
    assert_eq!(temporaries(&cache), 0);
}
