//! The `file` source: reads a file, or every file a glob matches, once or
//! following them like `tail -F`, and checkpoints how far every sink has
//! accepted each file so that a restart resumes there (see [`checkpoint`]).
//!
//! Followed files are polled: that sees rotation, truncation and
//! recreation the same way on every file system, which inotify does not.
//!
//! - Rotation by rename: the renamed file is read to its end, then let go;
//!   the new file at the path is read from its beginning.
//! - copytruncate: a file shorter than what was read, or whose first bytes
//!   changed, was truncated. The lines not yet read are read from the copy
//!   (a file in the same directory whose name starts with the file's and
//!   whose first bytes are the old ones), then the file from its new
//!   beginning. What was written between the copy and the truncation is in
//!   neither file and cannot be read.
//! - Shutdown: whole lines read are sent; a line not yet finished is left
//!   for the next start, never sent as an event of its own.

pub mod checkpoint;

pub use checkpoint::{Ledger, Marks};

use super::component::{BuildContext, Job, Source};
use super::{Batcher, LineReader};
use crate::codec::Decoder;
use crate::config::{FileSource, ReadFrom};
use crate::topology::{Closed, Shutdown};
use checkpoint::{FileKey, Head, Known};
use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often followed files are checked for growth, truncation or rotation.
const POLL: Duration = Duration::from_millis(100);

/// How often a glob is matched again for new files.
const GLOB_EVERY: Duration = Duration::from_secs(1);

/// How long a renamed or deleted file is still read after its last byte:
/// the writer may not have reopened its log yet.
const LEAVING_GRACE: Duration = Duration::from_secs(1);

/// Most bytes read from one file before the others get their turn.
const ROUND: u64 = 4 << 20;

/// Which paths a source reads: one file or a glob, less the excluded.
#[derive(Debug, Clone)]
pub struct Paths {
    path: PathBuf,
    glob: Option<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
}

impl Paths {
    /// `path` (absolute) and the `exclude` globs, or what is wrong with one.
    pub fn new(path: PathBuf, exclude: &[String]) -> Result<Paths, String> {
        let text = path.to_string_lossy();
        let glob = match text.contains(['*', '?', '[']) {
            true => Some(glob::Pattern::new(&text).map_err(|e| format!("`path` `{text}`: {e}"))?),
            false => None,
        };
        let exclude = exclude
            .iter()
            .map(|e| glob::Pattern::new(e).map_err(|err| format!("`exclude` `{e}`: {err}")))
            .collect::<Result<_, _>>()?;
        Ok(Paths {
            path,
            glob,
            exclude,
        })
    }

    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    /// The files the paths name now.
    fn scan(&self) -> Vec<PathBuf> {
        let found: Vec<PathBuf> = match &self.glob {
            None => vec![self.path.clone()],
            Some(g) => match glob::glob(g.as_str()) {
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(_) => Vec::new(),
            },
        };
        found.into_iter().filter(|p| !self.excluded(p)).collect()
    }

    fn excluded(&self, p: &Path) -> bool {
        let name = p.file_name().map(Path::new).unwrap_or(p);
        self.exclude.iter().any(|e| match e.as_str().contains('/') {
            true => e.matches_path(p),
            false => e.matches_path(name),
        })
    }
}

/// One file being read.
struct Tailed {
    path: PathBuf,
    file: File,
    key: FileKey,
    /// The file's stream in the ledger.
    id: u64,
    reader: LineReader,
    /// The next byte to read.
    pos: u64,
    head: Head,
    /// The size at the last look: the head is checked again when it changes.
    size: u64,
    /// Since when the path no longer names this file (renamed, deleted, or
    /// a copy read for what it holds): it is read to its end, then let go.
    leaving: Option<Instant>,
}

/// What a source run shares with its helpers.
struct Ctx<'a> {
    name: &'a str,
    cfg: &'a FileSource,
    ledger: &'a Arc<Ledger>,
}

impl Ctx<'_> {
    /// Starts reading `file` (`size` bytes long, starting with `head`) at
    /// `offset` as a new stream.
    fn tail(
        &self,
        path: PathBuf,
        file: File,
        key: FileKey,
        size: u64,
        head: Head,
        offset: u64,
    ) -> Tailed {
        let id = self.ledger.start(key, head, &path, offset);
        self.tail_stream(path, file, key, size, head, id, offset)
    }

    #[allow(clippy::too_many_arguments)]
    fn tail_stream(
        &self,
        path: PathBuf,
        mut file: File,
        key: FileKey,
        size: u64,
        head: Head,
        id: u64,
        offset: u64,
    ) -> Tailed {
        if offset > 0 {
            if let Err(e) = file.seek(SeekFrom::Start(offset)) {
                tracing::error!(source = self.name, "cannot seek in {}: {e}", path.display());
            }
        }
        let decoder = Decoder::new(
            self.cfg.format,
            &self.cfg.timestamp_field,
            self.cfg.max_line_bytes,
        );
        let reader = LineReader::new(decoder, path.display().to_string()).checkpointed(id, offset);
        Tailed {
            path,
            file,
            key,
            id,
            reader,
            pos: offset,
            head,
            size,
            leaving: None,
        }
    }

    /// Reads the copy that holds the old content of a truncated file from
    /// `offset`, under the same stream (its offsets are the same bytes).
    fn tail_copy(&self, id: u64, head: Head, copy: Copy, offset: u64) -> Tailed {
        tracing::info!(
            source = self.name,
            "reading what was left of the old content from its copy {}",
            copy.path.display()
        );
        self.ledger.moved(id, copy.key, &copy.path);
        let mut t = self.tail_stream(copy.path, copy.file, copy.key, copy.size, head, id, offset);
        t.leaving = Some(Instant::now());
        t
    }
}

impl Source for FileSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        cx.check_lines_format(self.format);
        let path = cx.pipeline.resolve(&self.path);
        let paths = match Paths::new(path.clone(), &self.exclude) {
            Ok(paths) => paths,
            Err(what) => {
                cx.problem("path", what);
                return None;
            }
        };
        if !self.follow && !paths.is_glob() && !path.is_file() {
            let what = format!(
                "no file at {} (set `follow = true` to wait for it)",
                path.display()
            );
            cx.problem("path", what);
        }
        let saved = self.checkpoint.unwrap_or(self.follow).then(|| {
            cx.pipeline
                .state_path("checkpoints", &format!("{}.json", cx.name))
        });
        // Checked here so that `weir validate` reports an unreadable file;
        // read when the source starts, after a source it replaces (a
        // reload) saved its last.
        if let Some(Err(what)) = saved.as_deref().map(Ledger::check) {
            cx.problem("checkpoint", what);
        }
        let (name, cfg) = (cx.name.to_string(), self.clone());
        Some(Box::new(move || match Ledger::open(saved) {
            Ok(ledger) => run(&name, &cfg, &paths, Arc::new(ledger), out, shutdown),
            Err(what) => tracing::error!(source = %name, "{what}"),
        }))
    }
}

pub fn run(
    name: &str,
    cfg: &FileSource,
    paths: &Paths,
    ledger: Arc<Ledger>,
    out: Batcher,
    shutdown: Shutdown,
) {
    let mut out = out.with_marks(Marks::new(ledger.clone()));
    let decoder = Decoder::new(cfg.format, &cfg.timestamp_field, cfg.max_line_bytes);
    out.start_decoders(name, &decoder);
    let ctx = Ctx {
        name,
        cfg,
        ledger: &ledger,
    };
    let mut files: Vec<Tailed> = Vec::new();
    // Copies of files being read, found before their original was
    // truncated: their lines come from the original.
    let mut copies: HashSet<FileKey> = HashSet::new();
    let mut warned: HashSet<PathBuf> = HashSet::new();
    // Streams let go with lines still in flight: forgotten once accepted.
    let mut retiring: Vec<u64> = Vec::new();
    let mut first = true;
    let mut next_scan = Instant::now();
    loop {
        if shutdown.is_triggered() {
            break;
        }
        if Instant::now() >= next_scan {
            discover(&ctx, paths, &mut files, &mut copies, &mut warned, first);
            if first {
                resume_unclaimed(&ctx, &mut files);
                ledger.forget_unclaimed();
                first = false;
            }
            next_scan = Instant::now() + if paths.is_glob() { GLOB_EVERY } else { POLL };
        }
        // Truncation is looked for before every read: a file truncated and
        // written past where weir was would otherwise be read from the
        // middle of its new content.
        let keys = files_keys(&files);
        let mut found: Vec<Tailed> = Vec::new();
        let mut read = false;
        for t in &mut files {
            if t.truncated(&ledger) {
                let mut skip = keys.clone();
                skip.extend(found.iter().map(|c| c.key));
                match t.restart(&ctx, &mut out, &skip, &mut copies) {
                    Ok(copy) => found.extend(copy),
                    Err(Closed) => return,
                }
            }
            match t.read(&mut out) {
                Ok(n) => read |= n > 0,
                Err(Closed) => return,
            }
        }
        read |= !found.is_empty();
        files.extend(found);
        if read {
            continue;
        }
        // Every file is read to its end, for now.
        if out.flush().is_err() {
            return;
        }
        if !cfg.follow {
            for t in &mut files {
                if t.reader.finish(&mut out).is_err() {
                    return;
                }
            }
            break;
        }
        let mut i = 0;
        while i < files.len() {
            let t = &mut files[i];
            match t.leaving {
                Some(since) if since.elapsed() >= LEAVING_GRACE && !t.grew() => {
                    // Read to its end: a last line without a newline is whole.
                    if t.reader.finish(&mut out).is_err() {
                        return;
                    }
                    tracing::debug!(source = name, "done with {}", t.path.display());
                    retiring.push(t.id);
                    files.swap_remove(i);
                }
                _ => i += 1,
            }
        }
        retiring.retain(|&id| match ledger.in_flight(id) {
            0 => {
                ledger.forget(id);
                false
            }
            _ => true,
        });
        ledger.save_if_due();
        std::thread::sleep(POLL);
    }
    let _ = out.flush();
    let unfinished: usize = files.iter().map(|t| t.reader.unfinished()).sum();
    if unfinished > 0 && cfg.follow {
        tracing::info!(
            source = name,
            "{unfinished} bytes of unfinished lines are left for the next start"
        );
    }
    ledger.save();
}

fn files_keys(files: &[Tailed]) -> Vec<FileKey> {
    files.iter().map(|t| t.key).collect()
}

/// Matches the paths again: new files are read, moved ones followed, and
/// the ones no path names any more are read to their end.
fn discover(
    ctx: &Ctx<'_>,
    paths: &Paths,
    files: &mut Vec<Tailed>,
    copies: &mut HashSet<FileKey>,
    warned: &mut HashSet<PathBuf>,
    first: bool,
) {
    let mut seen = HashSet::new();
    for path in paths.scan() {
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound && warned.insert(path.clone()) {
                    tracing::warn!(source = ctx.name, "cannot read {}: {e}", path.display());
                } else if first && !ctx.cfg.follow && warned.insert(path.clone()) {
                    tracing::error!(source = ctx.name, "no file at {}", path.display());
                } else if first && warned.insert(path.clone()) {
                    tracing::info!(
                        source = ctx.name,
                        "waiting for {} to appear",
                        path.display()
                    );
                }
                continue;
            }
        };
        let key = FileKey::of(&meta);
        seen.insert(key);
        if let Some(t) = files.iter_mut().find(|t| t.key == key) {
            if t.path != path {
                ctx.ledger.moved(t.id, key, &path);
                t.path = path;
            }
            t.leaving = None;
            continue;
        }
        if copies.contains(&key) {
            continue;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if warned.insert(path.clone()) {
                    tracing::warn!(source = ctx.name, "cannot open {}: {e}", path.display());
                }
                continue;
            }
        };
        let size = meta.len();
        let head = Head::of(&file, size).unwrap_or_default();
        if head.is_full() && files.iter().any(|t| t.head == head && t.leaving.is_none()) {
            // A copy of a file being read: copytruncate makes it before it
            // truncates the original, whose lines are read from there.
            tracing::debug!(
                source = ctx.name,
                "{} is a copy of a file being read",
                path.display()
            );
            copies.insert(key);
            continue;
        }
        warned.remove(&path);
        let offset = match ctx.ledger.known(key, &file, size) {
            Known::At(offset) => offset,
            Known::Replaced { head, offset } => {
                // Truncated while weir was down: the old lines not yet
                // accepted may still be in a copy.
                let keys = files_keys(files);
                if let Some(copy) = find_copy(&path, head, offset, &keys) {
                    let from = ctx.ledger.saved_offset(copy.key, head).unwrap_or(offset);
                    let id = ctx.ledger.start(copy.key, head, &copy.path, from);
                    files.push(ctx.tail_copy(id, head, copy, from));
                }
                0
            }
            Known::Unknown if first && ctx.cfg.read_from == ReadFrom::End => {
                line_start(&file, size)
            }
            Known::Unknown => 0,
        };
        tracing::debug!(
            source = ctx.name,
            "reading {} from byte {offset}",
            path.display()
        );
        files.push(ctx.tail(path, file, key, size, head, offset));
    }
    for t in files.iter_mut() {
        if !seen.contains(&t.key) && t.leaving.is_none() {
            t.leaving = Some(Instant::now());
        }
    }
}

/// Files the last run was reading that no path names now (rotated by
/// rename while weir was down, or a copy being read): what of them was not
/// accepted is read. Renamed, a file is looked for beside its old name.
fn resume_unclaimed(ctx: &Ctx<'_>, files: &mut Vec<Tailed>) {
    for (path, key, head, offset) in ctx.ledger.unclaimed() {
        let Some((path, file, meta)) = find_by_key(&path, key) else {
            continue;
        };
        if !head.matches(&file) || meta.len() <= offset {
            continue;
        }
        tracing::info!(
            source = ctx.name,
            "reading the rest of {}, rotated while weir was down",
            path.display()
        );
        let size = meta.len();
        let head = Head::of(&file, size).unwrap_or_default();
        let mut t = ctx.tail(path, file, key, size, head, offset);
        t.leaving = Some(Instant::now());
        files.push(t);
    }
}

/// Where the last line of a file that is `size` bytes long starts: a file
/// read from its end is read from there, so that a line being written when
/// weir starts is read whole, not from its middle.
fn line_start(file: &File, size: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut tail = vec![0; size.min(64 << 10) as usize];
    let from = size - tail.len() as u64;
    match file.read_exact_at(&mut tail, from) {
        Ok(()) => memchr::memrchr(b'\n', &tail).map_or(from, |i| from + i as u64 + 1),
        Err(_) => size,
    }
}

/// The file `key`: at `path`, or renamed in the same directory.
fn find_by_key(path: &Path, key: FileKey) -> Option<(PathBuf, File, std::fs::Metadata)> {
    let open = |p: &Path| {
        let file = File::open(p).ok()?;
        let meta = file.metadata().ok()?;
        (FileKey::of(&meta) == key).then(|| (p.to_path_buf(), file, meta))
    };
    if let Some(found) = open(path) {
        return Some(found);
    }
    std::fs::read_dir(path.parent()?)
        .ok()?
        .flatten()
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && FileKey::of(&m) == key)
        })
        .and_then(|e| open(&e.path()))
}

/// A copytruncate copy of a file.
struct Copy {
    path: PathBuf,
    file: File,
    key: FileKey,
    size: u64,
}

/// The newest file beside `path`, named like it, that starts with `head`
/// and holds at least `offset` bytes, other than the files in `skip`.
fn find_copy(path: &Path, head: Head, offset: u64, skip: &[FileKey]) -> Option<Copy> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    let mut best: Option<(std::time::SystemTime, Copy)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let matches = p != path
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(name));
        if !matches {
            continue;
        }
        let Ok(file) = File::open(&p) else { continue };
        let Ok(meta) = file.metadata() else { continue };
        let key = FileKey::of(&meta);
        if !meta.is_file() || meta.len() < offset || skip.contains(&key) || !head.matches(&file) {
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(m, _)| modified > *m) {
            let size = meta.len();
            best = Some((
                modified,
                Copy {
                    path: p,
                    file,
                    key,
                    size,
                },
            ));
        }
    }
    best.map(|(_, c)| c)
}

impl Tailed {
    /// Reads what is there, up to a round's worth; returns the bytes read.
    fn read(&mut self, out: &mut Batcher) -> Result<u64, Closed> {
        let mut total = 0;
        while total < ROUND {
            let n = match self.file.read(self.reader.splitter.spare()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::error!("read error on {}: {e}", self.path.display());
                    break;
                }
            };
            self.reader.splitter.filled(n);
            self.pos += n as u64;
            total += n as u64;
            self.reader.drain(out)?;
        }
        Ok(total)
    }

    /// The file is now longer than what was read.
    fn grew(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.len() > self.pos)
    }

    /// At the end of what was read: whether the file was truncated (it is
    /// shorter, or its first bytes changed). Takes a longer head of a file
    /// that was shorter than one.
    fn truncated(&mut self, ledger: &Ledger) -> bool {
        let Ok(meta) = self.file.metadata() else {
            return false;
        };
        let size = meta.len();
        if size < self.pos {
            return true;
        }
        if size == self.size {
            return false;
        }
        self.size = size;
        if !self.head.matches(&self.file) {
            return true;
        }
        if !self.head.is_full() {
            if let Ok(h) = Head::of(&self.file, size) {
                self.head = h;
                ledger.set_head(self.id, h);
            }
        }
        false
    }

    /// The file was truncated: what was not read of the old content comes
    /// from its copy if one is found, then the file is read from its start.
    /// Returns the copy to read.
    fn restart(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Batcher,
        skip: &[FileKey],
        copies: &mut HashSet<FileKey>,
    ) -> Result<Option<Tailed>, Closed> {
        let offset = self.reader.offset();
        let copy = match find_copy(&self.path, self.head, offset, skip) {
            Some(copy) => {
                copies.remove(&copy.key);
                Some(ctx.tail_copy(self.id, self.head, copy, offset))
            }
            None => {
                tracing::warn!(
                    source = ctx.name,
                    "{} was truncated; no copy of its old content was found: what was written to it after byte {} is lost",
                    self.path.display(),
                    self.pos
                );
                // The unfinished line read before is all there is of it.
                self.reader.finish(out)?;
                ctx.ledger.forget(self.id);
                None
            }
        };
        let _ = self.file.seek(SeekFrom::Start(0));
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        let file = self.file.try_clone();
        let (path, key) = (self.path.clone(), self.key);
        match file {
            Ok(f) => {
                let head = Head::of(&f, size).unwrap_or_default();
                *self = ctx.tail(path, f, key, size, head, 0);
            }
            Err(e) => tracing::error!(source = ctx.name, "cannot reopen {}: {e}", path.display()),
        }
        Ok(copy)
    }
}
