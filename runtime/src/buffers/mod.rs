//! What stands between a sink and its inputs: a queue in memory (the
//! default: a slow sink slows its sources down), or a disk buffer.
//!
//! A disk buffer writes every batch (checksummed, in segment files under
//! `data_dir/buffers/SINK/`) before the batch's sources are acknowledged,
//! hands the batches to the sink from there, and removes them once the sink
//! accepted them. A sink that is down no longer holds up the other sinks of
//! its sources; a crash replays what the sink had not accepted. See
//! `docs/delivery.md`.
//!
//! ```toml
//! [sinks.search]
//! type = "elasticsearch"
//! inputs = ["app"]
//! endpoint = "http://127.0.0.1:9200"
//! buffer = { type = "disk", max_size = "1GiB", when_full = "block" }
//! ```

pub mod disk;

use crate::topology::{drain, Ack, Batch, Rx, Shutdown, Stats, Tx};
use serde::Deserialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_layout::BatchBuf;

/// `buffer = { ... }` on a sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BufferConfig {
    /// The sink's input queue (`channel_capacity` batches).
    #[default]
    Memory,
    Disk(DiskBuffer),
}

/// A disk buffer's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskBuffer {
    /// Most bytes held on disk: `"1GiB"`, `"500MB"`, or a number of bytes.
    #[serde(default = "default_max_size")]
    pub max_size: Size,
    #[serde(default)]
    pub when_full: WhenFull,
}

/// What a full disk buffer does with the next batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Waits for room: the sources slow down, as with a memory buffer.
    #[default]
    Block,
    /// Drops the batch (counted as `buffer_full`): the sources go on.
    DropNewest,
}

/// A size in bytes, written as a number or with a unit (`KiB`, `MiB`,
/// `GiB`, `KB`, `MB`, `GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(Size(n)),
            Raw::Text(t) => parse_size(&t).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

fn default_max_size() -> Size {
    Size(1 << 30)
}

/// `"1GiB"` → bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (say \"512MiB\" or \"1GiB\")"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{other}` is not a unit of size (KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Runs `sink` behind a disk buffer in `dir`: one thread writes what comes
/// from `input` to disk and lets its sources go; another hands the sink what
/// is on disk, which is removed once the sink accepted it. On a shutdown
/// what the sink has not taken stays on disk for the next start.
#[allow(clippy::too_many_arguments)]
pub fn run_disk(
    name: &str,
    cfg: &DiskBuffer,
    dir: &Path,
    input: Rx,
    capacity: usize,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    sink: impl FnOnce(Rx),
) {
    // One user of the directory at a time: a sink being replaced by a
    // reload hands it over once it has let go, another weir never shares it.
    let _lock = match lock(dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                sink = name,
                "cannot lock its disk buffer {}: {e}; stopping the pipeline",
                dir.display()
            );
            shutdown.trigger();
            return drain(&input);
        }
    };
    let opts = disk::Options {
        max_size: cfg.max_size.0,
        segment_size: (cfg.max_size.0 / 8).clamp(1 << 20, 32 << 20),
        ..disk::Options::default()
    };
    let (writer, reader, found) = match disk::open(dir, opts) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(
                sink = name,
                "cannot open its disk buffer: {e}; stopping the pipeline"
            );
            shutdown.trigger();
            return drain(&input);
        }
    };
    if found.records > 0 {
        tracing::info!(
            sink = name,
            "replaying {} batches ({} bytes) from its disk buffer",
            found.records,
            found.bytes
        );
    }
    if found.corrupt_records > 0 || found.truncated_bytes > 0 {
        tracing::warn!(
            sink = name,
            "its disk buffer was damaged: {} batches failed their checksum, {} bytes of a last write were cut off",
            found.corrupt_records,
            found.truncated_bytes
        );
        stats.count_reason("buffer_corrupt", found.corrupt_records);
    }
    let (tx, rx) = async_channel::bounded(capacity.max(1));
    let when_full = cfg.when_full;
    let (n, s) = (name.to_string(), stats.clone());
    let writing = std::thread::Builder::new()
        .name(format!("buffer-in-{name}"))
        .spawn(move || write(&n, writer, input, when_full, &s));
    // Syncs to disk run here, off the writer's path, also while the reader
    // waits behind a sink that is down.
    let (ticker, sinking) = (reader.ticker(), Arc::new(AtomicBool::new(true)));
    let s = sinking.clone();
    let ticking = std::thread::Builder::new()
        .name(format!("buffer-sync-{name}"))
        .spawn(move || {
            while s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                ticker.tick();
            }
        });
    let (n, sd) = (name.to_string(), shutdown.clone());
    let reading = std::thread::Builder::new()
        .name(format!("buffer-out-{name}"))
        .spawn(move || read(&n, reader, tx, &sd));
    sink(rx);
    for t in [writing, reading].into_iter().flatten() {
        let _ = t.join();
    }
    sinking.store(false, Ordering::Relaxed);
    if let Ok(t) = ticking {
        let _ = t.join();
    }
}

/// Takes `dir/lock` for this process, waiting while another holds it.
fn lock(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    let fd = file.as_raw_fd();
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(file);
    }
    tracing::info!(
        "waiting for {} to be let go (a sink being replaced, or another weir using this data_dir)",
        dir.display()
    );
    // SAFETY: as above; this one waits.
    match unsafe { libc::flock(fd, libc::LOCK_EX) } {
        0 => Ok(file),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Writes each batch to disk, then lets go of its tokens: its sources may
/// commit, the disk holds it now.
fn write(name: &str, mut writer: disk::Writer, input: Rx, when_full: WhenFull, stats: &Stats) {
    while let Ok(batch) = input.recv_blocking() {
        let written = match when_full {
            WhenFull::Block => writer.append(batch.events.as_bytes()),
            WhenFull::DropNewest => writer.try_append(batch.events.as_bytes()),
        };
        match written {
            Ok(()) => {}
            Err(disk::Error::Full) => {
                // Dropped on purpose: the sources are not held up.
                Stats::add(&stats.dropped, batch.len());
                stats.count_reason("buffer_full", batch.len() as u64);
            }
            Err(e) => {
                tracing::error!(sink = name, "cannot write to its disk buffer: {e}");
                Stats::add(&stats.errors, batch.len());
                stats.count_reason("buffer_error", batch.len() as u64);
                batch.fail();
            }
        }
    }
}

/// Hands the sink what is on disk, oldest first, each batch with a token
/// that removes it from disk once the sink accepted it.
fn read(name: &str, mut reader: disk::Reader, out: Tx, shutdown: &Shutdown) {
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let record = match reader.next_timeout(Duration::from_millis(100)) {
            Ok(disk::Next::Record(r)) => r,
            Ok(disk::Next::Empty) => continue,
            Ok(disk::Next::Closed) => return,
            Err(e) => {
                tracing::error!(sink = name, "cannot read its disk buffer: {e}");
                return;
            }
        };
        let events = match BatchBuf::from_own_bytes(record.payload) {
            Ok(b) => b,
            Err(e) => {
                // Checksummed, so written by another version of weir.
                tracing::error!(
                    sink = name,
                    "a batch in its disk buffer is not readable: {e}; skipped"
                );
                reader.acker().ack(record.id);
                continue;
            }
        };
        let (acker, id, stopping) = (reader.acker(), record.id, shutdown.clone());
        // What the sink failed while the pipeline stops (it gave up on a
        // down endpoint) stays for the next start; what it refused for good
        // while running (counted and logged by the sink) would be refused
        // again, and would wedge the buffer.
        let ack = Ack::new(Box::new(move |ok| {
            if ok || !stopping.is_triggered() {
                acker.ack(id);
            }
        }));
        if out.send_blocking(Batch::new(events, vec![ack])).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_user_of_the_directory_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.path().to_path_buf();
        let second = std::thread::spawn(move || {
            let l = lock(&d).unwrap();
            tx.send(()).unwrap();
            l
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "both held it"
        );
        drop(first);
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
        drop(second.join().unwrap());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("GiB").is_err());
    }
}
