//! File checkpoints: per file, the offset up to which every sink accepted
//! its lines, kept in `data_dir` so that a restart resumes there.
//!
//! A file is known by its device and inode (which a rename keeps) and a
//! checksum of its first bytes (which tells it from a new file that got a
//! freed inode number, and finds the copy that a copytruncate rotation
//! made). Offsets move only when acknowledgement tokens come back, never
//! when lines are read, so a crash replays what was in flight and no more.

use crate::topology::Ack;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes at the start of a file that its checksum covers.
pub const HEAD: u64 = 256;

/// How often moved checkpoints are written while the source runs; a crash
/// replays at most the lines accepted in this time, plus those in flight.
pub const SAVE_EVERY: Duration = Duration::from_millis(250);

/// Which file: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A checksum of the first `len` bytes of a file (all of them up to [`HEAD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Head {
    pub len: u64,
    pub crc: u32,
}

impl Head {
    /// The head of `file`, which is `size` bytes long now.
    pub fn of(file: &File, size: u64) -> std::io::Result<Head> {
        Head::first(file, size.min(HEAD))
    }

    /// The checksum of exactly the first `len` bytes; a shorter file gives
    /// a head that matches nothing longer.
    fn first(file: &File, len: u64) -> std::io::Result<Head> {
        let mut buf = [0u8; HEAD as usize];
        let buf = &mut buf[..len as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(Head {
            len: got as u64,
            crc: crc32fast::hash(&buf[..got]),
        })
    }

    /// Whether `file` still starts with the bytes this head was taken of.
    pub fn matches(&self, file: &File) -> bool {
        Head::first(file, self.len).is_ok_and(|h| h == *self)
    }

    /// Long enough to tell files apart (shorter heads only guard inodes).
    pub fn is_full(&self) -> bool {
        self.len == HEAD
    }
}

/// One file's entry in `checkpoints.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    path: PathBuf,
    dev: u64,
    ino: u64,
    head: Head,
    offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedFile {
    version: u32,
    files: Vec<Saved>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Out,
    Accepted,
    /// Not delivered: it holds its file's checkpoint for good.
    Failed,
}

/// The lines of one file being read, and what of them is accepted.
struct Stream {
    key: FileKey,
    head: Head,
    path: PathBuf,
    /// Every line before this offset is accepted by every sink.
    committed: u64,
    /// `(batch, offset its lines reach, fate)`, oldest first.
    pending: VecDeque<(u64, u64, Fate)>,
}

#[derive(Default)]
struct State {
    streams: HashMap<u64, Stream>,
    next_stream: u64,
    next_batch: u64,
    /// Entries loaded at start that no file has claimed yet.
    loaded: HashMap<FileKey, Saved>,
    dirty: bool,
}

/// The checkpoints of one `file` source.
pub struct Ledger {
    /// `None`: checkpoints are off; streams are still tracked, not saved.
    path: Option<PathBuf>,
    state: Mutex<State>,
    last_save: Mutex<Instant>,
}

/// Where a file known from an earlier run resumes.
pub enum Known {
    /// The same file: at this offset.
    At(u64),
    /// The file at that inode is not the one saved (it was truncated or
    /// replaced while weir was down): its old content, up to `offset`, is
    /// what the copy with that `head` may hold on.
    Replaced {
        head: Head,
        offset: u64,
    },
    Unknown,
}

impl Ledger {
    /// Whether the ledger at `path` can be read (a missing one can: it is
    /// empty), without reading it: for `weir validate`.
    pub fn check(path: &Path) -> Result<(), String> {
        match File::open(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot read {}: {e}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// The ledger saved at `path` (none yet: empty); `None` keeps nothing.
    pub fn open(path: Option<PathBuf>) -> Result<Ledger, String> {
        let mut state = State::default();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    // Damaged (a power loss before the disk had it): the
                    // files are read as if seen for the first time, which
                    // is said, rather than not starting at all.
                    let saved: SavedFile = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        tracing::error!(
                            "{} is damaged ({e}); files are read as if seen for the first time (`read_from`)",
                            p.display()
                        );
                        SavedFile { version: 1, files: Vec::new() }
                    });
                    for s in saved.files {
                        let key = FileKey {
                            dev: s.dev,
                            ino: s.ino,
                        };
                        state.loaded.insert(key, s);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
            }
        }
        Ok(Ledger {
            path,
            state: Mutex::new(state),
            last_save: Mutex::new(Instant::now()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the last run knew of the file `key`, now open as `file`.
    pub fn known(&self, key: FileKey, file: &File, size: u64) -> Known {
        let s = self.state();
        match s.loaded.get(&key) {
            Some(saved) if saved.head.matches(file) && saved.offset <= size => {
                Known::At(saved.offset)
            }
            Some(saved) => Known::Replaced {
                head: saved.head,
                offset: saved.offset,
            },
            None => Known::Unknown,
        }
    }

    /// The saved offset of `key` when it still has `head`: where a copy
    /// that was itself being read resumes.
    pub fn saved_offset(&self, key: FileKey, head: Head) -> Option<u64> {
        let s = self.state();
        s.loaded
            .get(&key)
            .filter(|saved| saved.head == head)
            .map(|saved| saved.offset)
    }

    /// Entries loaded that no file found by the first scan claimed.
    pub fn unclaimed(&self) -> Vec<(PathBuf, FileKey, Head, u64)> {
        let s = self.state();
        s.loaded
            .iter()
            .map(|(k, v)| (v.path.clone(), *k, v.head, v.offset))
            .collect()
    }

    /// Entries of files the first scan did not find are not kept.
    pub fn forget_unclaimed(&self) {
        let mut s = self.state();
        if !s.loaded.is_empty() {
            s.loaded.clear();
            s.dirty = true;
        }
    }

    /// Starts tracking the file `key` read from `offset`; returns its id.
    pub fn start(&self, key: FileKey, head: Head, path: &Path, offset: u64) -> u64 {
        let mut s = self.state();
        s.loaded.remove(&key);
        s.next_stream += 1;
        let id = s.next_stream;
        s.streams.insert(
            id,
            Stream {
                key,
                head,
                path: path.to_path_buf(),
                committed: offset,
                pending: VecDeque::new(),
            },
        );
        s.dirty = true;
        id
    }

    /// The file grew into a longer head.
    pub fn set_head(&self, id: u64, head: Head) {
        if let Some(st) = self.state().streams.get_mut(&id) {
            st.head = head;
        }
    }

    /// The stream's bytes now live in another file (a copytruncate copy)
    /// or under another name (a rename): offsets stay valid.
    pub fn moved(&self, id: u64, key: FileKey, path: &Path) {
        let mut s = self.state();
        if let Some(st) = s.streams.get_mut(&id) {
            st.key = key;
            st.path = path.to_path_buf();
        }
        s.dirty = true;
    }

    /// The stream's file is gone or read to its end and let go: it is no
    /// longer saved (tokens still out are then ignored).
    pub fn forget(&self, id: u64) {
        let mut s = self.state();
        s.streams.remove(&id);
        s.dirty = true;
    }

    /// Tokens of lines in flight for `id`.
    pub fn in_flight(&self, id: u64) -> usize {
        self.state()
            .streams
            .get(&id)
            .map_or(0, |st| st.pending.len())
    }

    fn batch(&self, marks: &[(u64, u64)]) -> u64 {
        let mut s = self.state();
        s.next_batch += 1;
        let batch = s.next_batch;
        for &(id, offset) in marks {
            if let Some(st) = s.streams.get_mut(&id) {
                st.pending.push_back((batch, offset, Fate::Out));
            }
        }
        batch
    }

    /// A batch is through. A failed one stays at the head of its files, so
    /// nothing after it is checkpointed.
    fn done(&self, batch: u64, marks: &[(u64, u64)], ok: bool) {
        let mut s = self.state();
        let mut moved = false;
        for &(id, _) in marks {
            let Some(st) = s.streams.get_mut(&id) else {
                continue;
            };
            if let Some(e) = st.pending.iter_mut().find(|e| e.0 == batch) {
                e.2 = if ok { Fate::Accepted } else { Fate::Failed };
            }
            while let Some(&(_, offset, Fate::Accepted)) = st.pending.front() {
                st.committed = offset;
                st.pending.pop_front();
                moved = true;
            }
        }
        s.dirty |= moved;
    }

    /// Writes the checkpoints if they moved and [`SAVE_EVERY`] has passed.
    pub fn save_if_due(&self) {
        let due = self
            .last_save
            .lock()
            .map(|t| t.elapsed() >= SAVE_EVERY)
            .unwrap_or(true);
        if due {
            self.save();
        }
    }

    /// Writes the checkpoints if they moved: to a temporary file, synced,
    /// then renamed over the old one, so a crash leaves one or the other.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let files = {
            let mut s = self.state();
            if !s.dirty {
                return;
            }
            s.dirty = false;
            let mut files: Vec<Saved> = s.loaded.values().cloned().collect();
            files.extend(s.streams.values().map(|st| Saved {
                path: st.path.clone(),
                dev: st.key.dev,
                ino: st.key.ino,
                head: st.head,
                offset: st.committed,
            }));
            files
        };
        if let Ok(mut t) = self.last_save.lock() {
            *t = Instant::now();
        }
        if let Err(e) = write_atomically(path, &SavedFile { version: 1, files }) {
            tracing::error!("cannot save file checkpoints to {}: {e}", path.display());
            self.state().dirty = true;
        }
    }
}

impl Drop for Ledger {
    /// The last token is back (or the source ended): the final positions.
    fn drop(&mut self) {
        self.save();
    }
}

fn write_atomically(path: &Path, saved: &SavedFile) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// The positions a batch's lines reach in their files, collected while the
/// batch fills and turned into its acknowledgement token when it is sent.
pub struct Marks {
    ledger: Arc<Ledger>,
    marks: Vec<(u64, u64)>,
}

impl Marks {
    pub fn new(ledger: Arc<Ledger>) -> Marks {
        Marks {
            ledger,
            marks: Vec::new(),
        }
    }

    /// Lines of stream `id` up to `offset` are in the batch.
    pub fn mark(&mut self, id: u64, offset: u64) {
        match self.marks.iter_mut().find(|m| m.0 == id) {
            Some(m) => m.1 = offset,
            None => self.marks.push((id, offset)),
        }
    }

    /// The token for the batch being sent, if it has lines of any file.
    pub fn ack(&mut self) -> Option<Ack> {
        if self.marks.is_empty() {
            return None;
        }
        let marks = std::mem::take(&mut self.marks);
        let batch = self.ledger.batch(&marks);
        let ledger = self.ledger.clone();
        Some(Ack::new(Box::new(move |ok| ledger.done(batch, &marks, ok))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_in(dir: &Path) -> Arc<Ledger> {
        Arc::new(Ledger::open(Some(dir.join("checkpoints.json"))).unwrap())
    }

    #[test]
    fn checkpoints_follow_the_oldest_unaccepted_batch_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"one\ntwo\nthree\n").unwrap();
        let file = File::open(&path).unwrap();
        let key = FileKey::of(&file.metadata().unwrap());
        let head = Head::of(&file, 14).unwrap();

        let ledger = ledger_in(dir.path());
        let id = ledger.start(key, head, &path, 0);
        let mut marks = Marks::new(ledger.clone());
        marks.mark(id, 4);
        let first = marks.ack().unwrap();
        marks.mark(id, 8);
        let second = marks.ack().unwrap();
        drop(second);
        ledger.save();
        let reopened = Ledger::open(Some(dir.path().join("checkpoints.json"))).unwrap();
        assert!(
            matches!(reopened.known(key, &file, 14), Known::At(0)),
            "the second batch is accepted, the first is not"
        );
        drop(first);
        ledger.save();
        let reopened = Ledger::open(Some(dir.path().join("checkpoints.json"))).unwrap();
        assert!(matches!(reopened.known(key, &file, 14), Known::At(8)));

        // Rewritten in place (a truncation while weir was down): not the same.
        std::fs::write(&path, b"other content\n").unwrap();
        assert!(matches!(
            reopened.known(key, &file, 14),
            Known::Replaced { offset: 8, .. }
        ));
    }

    #[test]
    fn a_failed_batch_holds_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_in(dir.path());
        let key = FileKey { dev: 1, ino: 2 };
        let id = ledger.start(key, Head::default(), Path::new("x"), 0);
        let mut marks = Marks::new(ledger.clone());
        marks.mark(id, 10);
        let a = marks.ack().unwrap();
        marks.mark(id, 20);
        let b = marks.ack().unwrap();
        a.fail();
        drop(a);
        drop(b);
        assert_eq!(ledger.state().streams[&id].committed, 0);
    }
}
