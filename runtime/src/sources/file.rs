//! The `file` source: read a file once, or follow it like `tail -F`.

use super::{Batcher, LineReader};
use crate::codec::Decoder;
use crate::config::{FileSource, ReadFrom};
use crate::topology::Shutdown;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How often a followed file is checked for growth or rotation. Polling (as
/// `tail -F` does) sees rotation, truncation and recreation the same way on
/// every file system, which inotify alone does not.
const POLL: Duration = Duration::from_millis(100);

pub fn run(name: &str, cfg: &FileSource, path: &Path, mut out: Batcher, shutdown: Shutdown) {
    let origin = path.display().to_string();
    let decoder = Decoder::new(cfg.format, &cfg.timestamp_field, cfg.max_line_bytes);
    let mut reader = LineReader::new(decoder, origin.clone());
    let Some(mut file) = open(name, path, cfg.follow, &shutdown) else {
        return;
    };
    if cfg.read_from == ReadFrom::End {
        if let Err(e) = file.seek(SeekFrom::End(0)) {
            tracing::error!(source = name, "cannot seek to the end of {origin}: {e}");
        }
    }
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let n = match file.read(reader.splitter.spare()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(source = name, "read error on {origin}: {e}");
                if !cfg.follow {
                    break;
                }
                0
            }
        };
        if n > 0 {
            reader.splitter.filled(n);
            if reader.drain(&mut out).is_err() {
                return;
            }
            continue;
        }
        // End of what is there now.
        if !cfg.follow {
            break;
        }
        if out.flush().is_err() {
            return;
        }
        if rotated(&file, path) {
            // Whatever the old file held is read; a partial last line is
            // kept as a line of its own rather than lost.
            if reader.finish(&mut out).is_err() {
                return;
            }
            tracing::info!(
                source = name,
                "{origin} was rotated or truncated; reopening"
            );
            match open(name, path, true, &shutdown) {
                Some(f) => file = f,
                None => break,
            }
            reader.reset(origin.clone());
            continue;
        }
        std::thread::sleep(POLL);
    }
    let _ = reader.finish(&mut out);
    tracing::debug!(source = name, lines = reader.lines(), "file source done");
}

/// Opens `path`, waiting for it to appear when following.
fn open(name: &str, path: &Path, follow: bool, shutdown: &Shutdown) -> Option<File> {
    let mut warned = false;
    loop {
        match File::open(path) {
            Ok(f) => return Some(f),
            Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => {
                if !warned {
                    tracing::info!(source = name, "waiting for {} to appear", path.display());
                    warned = true;
                }
                if shutdown.is_triggered() {
                    return None;
                }
                std::thread::sleep(POLL);
            }
            Err(e) => {
                tracing::error!(source = name, "cannot open {}: {e}", path.display());
                return None;
            }
        }
    }
}

/// The path now names another file, or ours shrank below what we read.
fn rotated(file: &File, path: &Path) -> bool {
    let (Ok(ours), Ok(now)) = (file.metadata(), std::fs::metadata(path)) else {
        // Deleted and not yet recreated: keep waiting on the old handle.
        return false;
    };
    if ours.ino() != now.ino() || ours.dev() != now.dev() {
        return true;
    }
    let mut f = file;
    let pos = f.stream_position().unwrap_or(0);
    now.len() < pos
}
