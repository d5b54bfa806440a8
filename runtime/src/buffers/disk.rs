//! Crash-safe on-disk FIFO buffer in front of a sink (a Vector-style disk buffer).
//!
//! A [`Writer`] appends opaque records, a [`Reader`] hands them to the sink in order, and
//! [`Acker`]s (any thread, any order) report delivery. Unacknowledged records survive a
//! process crash and are replayed by the next [`open`]: delivery is at-least-once.
//!
//! # On-disk format
//! * `dir/{first_id:020}.seg`: segments named by the id of their first record. Each starts
//!   with the magic `WEIRBUF1` (a foreign `.seg` file is refused), then records
//!   `[u32 LE payload len][u32 LE crc32(payload)][u64 LE id][payload]`, ids consecutive
//!   from the name. A new writer never appends to an old segment, so a torn record can
//!   only be the last one of a segment written before a crash.
//! * `dir/ack`: `[u64 LE id of the next unacknowledged record][u32 LE crc32 of it]`,
//!   replaced atomically (`ack.tmp`, fdatasync, rename) at most every 100 ms while acks
//!   move it, and on close: a crash replays at most the last ~100 ms of acks. A damaged
//!   ack file counts as missing, so everything on disk is replayed.
//! * Segments whose records are all acknowledged (per the persisted ack) are deleted,
//!   except the one being written.
//!
//! # Recovery
//! [`open`] scans the segments that may hold unacknowledged records. A short or torn
//! record at the end of a segment (including a last record failing its crc) is cut off
//! and counted in [`Recovered::truncated_bytes`]. A bad crc or id before the end counts
//! as a corrupt record and the rest of that segment is skipped, as a bad length leaves
//! no way to resync; the following segments are still replayed. Ids keep increasing
//! across restarts. Acks of records the reader did not hand out in this run are ignored.
//!
//! # Durability
//! * [`Sync::Always`]: `append` returns after fdatasync; nothing it accepted is lost.
//! * [`Sync::Interval`]: a process crash loses nothing (the page cache survives it); a
//!   power loss loses what was appended since the last fdatasync. The sync (of the
//!   current segment, and of the segments rolled away from) runs on the first
//!   next/ack/[`Ticker::tick`] at least `interval` after the previous one, and on
//!   close; never on `append`, so waiting for the disk does not hold the writer up.
//!
//! One `open` per directory at a time is the caller's job: there is no lock file.
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"WEIRBUF1";
const MAGIC_LEN: u64 = MAGIC.len() as u64;
/// Record header: payload len, crc, id.
const HEADER: u64 = 16;
/// Longest a moved ack position waits before it is persisted.
const ACK_INTERVAL: Duration = Duration::from_millis(100);

/// How often appended data is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fdatasync at most every `interval` (and at segment roll / close): a process crash
    /// loses nothing, a power loss the records appended since the last sync.
    Interval(Duration),
    /// fdatasync before `append` returns.
    Always,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of unacknowledged records (headers included) held at most.
    pub max_size: u64,
    /// A segment rolls to a new file once the next record would take it past this.
    pub segment_size: u64,
    pub sync: Sync,
}

impl Default for Options {
    fn default() -> Self {
        let sync = Sync::Interval(Duration::from_secs(1));
        Options {
            max_size: 1 << 30,
            segment_size: 32 << 20,
            sync,
        }
    }
}

/// What [`open`] found on disk: records to replay, and what was damaged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Unacknowledged records that will be replayed.
    pub records: u64,
    /// Their size, headers included: the buffer starts at this size.
    pub bytes: u64,
    /// Records failing their crc/id check in the middle of a segment.
    pub corrupt_records: u64,
    /// Torn tails (a crash mid-write) cut off the end of segments.
    pub truncated_bytes: u64,
    /// Bytes from a corrupt record to the end of its segment: lost, as records cannot be
    /// resynced after a bad length.
    pub skipped_bytes: u64,
    /// The ack file was damaged, so acknowledged records are replayed too.
    pub ack_reset: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub payload: Vec<u8>,
}

/// What [`Reader::next_timeout`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Record(Record),
    /// Timed out with nothing to read; the writer is still open.
    Empty,
    /// The writer is gone and every record has been read.
    Closed,
}

#[derive(Debug)]
pub enum Error {
    /// The I/O call `op` on `path` failed.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// `try_append`: the record would take the buffer past `max_size`.
    Full,
    /// `append` had to wait for space, but the reader is gone so no ack will free any.
    /// (Appends that fit still succeed: their records wait on disk for the next `open`.)
    Closed,
    /// The payload does not fit the u32 length field.
    TooLarge { len: usize },
    /// A `.seg` file without our magic: refused rather than skipped or overwritten.
    Format { path: PathBuf },
    /// A record changed on disk after it was written or recovered. The reader stays at
    /// `offset`; reopening runs recovery, which skips the rest of that segment.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, op, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Full => f.write_str("disk buffer is full"),
            Error::Closed => f.write_str("disk buffer reader is gone: no space will be freed"),
            Error::TooLarge { len } => write!(f, "record of {len} bytes is over 4 GiB"),
            Error::Format { path } => write!(f, "{}: not a weir buffer segment", path.display()),
            Error::Corrupt {
                path,
                offset,
                reason,
            } => {
                let path = path.display();
                write!(f, "{path}: corrupt record at offset {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn ctx<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn seg_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

/// Returns (payload len, crc, id).
fn parse_header(h: [u8; 16]) -> (u32, u32, u64) {
    let [a, b, c, d, e, f, g, i, id @ ..] = h;
    let (len, crc) = (
        u32::from_le_bytes([a, b, c, d]),
        u32::from_le_bytes([e, f, g, i]),
    );
    (len, crc, u64::from_le_bytes(id))
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ctx(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// A segment as the reader may see it: `len` covers only complete records.
struct Seg {
    first_id: u64,
    path: PathBuf,
    len: u64,
}

#[derive(Default)]
struct State {
    /// Oldest first; the last one is the writer's.
    segs: VecDeque<Seg>,
    /// Bytes of unacknowledged records.
    size: u64,
    /// Records handed to the sink, not yet in the acknowledged prefix: (id, size, acked).
    inflight: VecDeque<(u64, u64, bool)>,
    /// Id of the next unacknowledged record.
    ack_pos: u64,
    persisted_ack: u64,
    last_ack_write: Option<Instant>,
    /// The writer's segment, so whichever thread comes by can run an overdue fdatasync.
    file: Option<(Arc<File>, PathBuf)>,
    dirty: bool,
    last_sync: Option<Instant>,
    /// Segments rolled away from and the directory's new names, not yet
    /// synced (Interval mode): synced off the writer's path.
    unsynced: Vec<(Arc<File>, PathBuf)>,
    dir_unsynced: bool,
    writer_closed: bool,
    reader_closed: bool,
    /// Failures of that housekeeping, handed to the next writer / reader call.
    writer_err: Option<Error>,
    reader_err: Option<Error>,
}

struct Shared {
    dir: PathBuf,
    opts: Options,
    state: Mutex<State>,
    cond: Condvar,
    /// Serializes ack-file writes and segment deletion, kept off the state lock.
    io: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs an overdue fdatasync (Interval mode), persists a moved ack position and
    /// deletes the segments it covers; `force` ignores the timers. Errors are parked for
    /// the side they concern, since acks cannot return them. The writer passes
    /// `sync = false`: a sync that waits for the disk must not hold up appends (and,
    /// through them, the sources); the reader, acks and [`Ticker`] run it.
    fn tick(&self, force: bool, sync: bool) {
        let _io = match self.io.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) if !force => return,
            Err(TryLockError::WouldBlock) => self.io.lock().unwrap_or_else(PoisonError::into_inner),
        };
        let now = Instant::now();
        let due = |last: Option<Instant>, every| force || last.is_none_or(|t| now - t >= every);
        let (sync, rolled, dir, ack) = {
            let mut st = self.lock();
            // Interval mode: the current segment, the ones rolled away from
            // and the directory's new names are synced together, once due.
            let pending = st.dirty || !st.unsynced.is_empty() || st.dir_unsynced;
            let due_sync = match self.opts.sync {
                Sync::Interval(every) => (sync || force) && pending && due(st.last_sync, every),
                Sync::Always => false,
            };
            let (sync, rolled, dir) = match due_sync {
                true => {
                    st.last_sync = Some(now);
                    let file = std::mem::take(&mut st.dirty).then(|| st.file.clone());
                    let rolled = std::mem::take(&mut st.unsynced);
                    (file.flatten(), rolled, std::mem::take(&mut st.dir_unsynced))
                }
                false => (None, Vec::new(), false),
            };
            let moved = st.ack_pos != st.persisted_ack;
            let ack = (moved && due(st.last_ack_write, ACK_INTERVAL)).then_some(st.ack_pos);
            if ack.is_some() {
                st.last_ack_write = Some(now);
            }
            (sync, rolled, dir, ack)
        };
        for (file, path) in rolled {
            // Deleted meanwhile (every record accepted): nothing to keep.
            if file.metadata().is_ok_and(|m| m.nlink() == 0) {
                continue;
            }
            if let Err(e) = file.sync_data() {
                self.lock().writer_err = Some(ctx(&path, "fdatasync")(e));
            }
        }
        if dir {
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                self.lock().writer_err = Some(ctx(&self.dir, "fsync dir")(e));
            }
        }
        if let Some((file, path)) = sync {
            if let Err(e) = file.sync_data() {
                let mut st = self.lock();
                st.dirty = true;
                st.writer_err = Some(ctx(&path, "fdatasync")(e));
            }
        }
        let Some(ack) = ack else { return };
        if let Err(e) = write_ack(&self.dir, ack) {
            self.lock().reader_err = Some(e);
            return;
        }
        let mut doomed = Vec::new();
        {
            let mut st = self.lock();
            st.persisted_ack = ack;
            while st.segs.len() > 1 && st.segs[1].first_id <= ack {
                doomed.extend(st.segs.pop_front().map(|s| s.path));
            }
        }
        for path in doomed {
            if let Err(e) = remove(&path) {
                self.lock().reader_err = Some(e);
            }
        }
    }
}

/// Writes `header` then `payload`, with `writev` while it takes them whole.
fn write_parts(mut file: &File, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let mut done = file.write_vectored(&[io::IoSlice::new(header), io::IoSlice::new(payload)])?;
    if done < header.len() {
        file.write_all(&header[done..])?;
        done = header.len();
    }
    file.write_all(&payload[done - header.len()..])
}

fn write_ack(dir: &Path, next_unacked: u64) -> Result<(), Error> {
    let id = next_unacked.to_le_bytes();
    let (tmp, path) = (dir.join("ack.tmp"), dir.join("ack"));
    let mut f = File::create(&tmp).map_err(ctx(&tmp, "create"))?;
    f.write_all(&[&id[..], &crc32fast::hash(&id).to_le_bytes()].concat())
        .and_then(|()| f.sync_data())
        .map_err(ctx(&tmp, "write"))?;
    fs::rename(&tmp, &path).map_err(ctx(&path, "rename"))
}

/// Returns the persisted ack position, and whether the ack file was damaged.
fn read_ack(dir: &Path) -> Result<(u64, bool), Error> {
    let path = dir.join("ack");
    match fs::read(&path) {
        Ok(b) if b.len() == 12 && crc32fast::hash(&b[..8]).to_le_bytes() == b[8..] => Ok((
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            false,
        )),
        Ok(_) => Ok((0, true)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((0, false)),
        Err(e) => Err(ctx(&path, "read")(e)),
    }
}

/// Verifies one segment and cuts a torn tail. Returns (valid length, last valid id,
/// unacknowledged records in it).
fn scan_segment(
    path: &Path,
    first: u64,
    ack: u64,
    rec: &mut Recovered,
) -> Result<(u64, Option<u64>, u64), Error> {
    let file = OpenOptions::new().read(true).write(true).open(path);
    let file = file.map_err(ctx(path, "open"))?;
    let file_len = file.metadata().map_err(ctx(path, "stat"))?.len();
    let mut r = io::BufReader::with_capacity(64 << 10, &file);
    let mut magic = [0u8; 8];
    let head = &mut magic[..file_len.min(MAGIC_LEN) as usize];
    r.read_exact(head).map_err(ctx(path, "read"))?;
    if file_len < MAGIC_LEN && MAGIC.starts_with(head) {
        rec.truncated_bytes += file_len; // crashed while creating it: holds nothing
        return Ok((0, None, 0));
    }
    if &magic != MAGIC {
        return Err(Error::Format {
            path: path.to_path_buf(),
        });
    }
    let (mut off, mut last, mut unacked, mut buf) = (MAGIC_LEN, None, 0, Vec::new());
    let torn = loop {
        if off == file_len {
            break false;
        }
        let mut h = [0u8; 16];
        if file_len - off < HEADER {
            break true;
        }
        r.read_exact(&mut h).map_err(ctx(path, "read"))?;
        let (len, crc, id) = parse_header(h);
        let end = off + HEADER + u64::from(len);
        if end > file_len {
            break true;
        }
        buf.resize(len as usize, 0);
        r.read_exact(&mut buf).map_err(ctx(path, "read"))?;
        if id != last.map_or(first, |l| l + 1) || crc32fast::hash(&buf) != crc {
            // A bad last record is a write the crash interrupted; anywhere else, damage.
            if end == file_len {
                break true;
            }
            rec.corrupt_records += 1;
            rec.skipped_bytes += file_len - off;
            break false;
        }
        if id >= ack {
            (unacked, rec.records, rec.bytes) =
                (unacked + 1, rec.records + 1, rec.bytes + end - off);
        }
        (last, off) = (Some(id), end);
    };
    if torn {
        rec.truncated_bytes += file_len - off;
        file.set_len(off)
            .and_then(|()| file.sync_all())
            .map_err(ctx(path, "truncate"))?;
    }
    Ok((off, last, unacked))
}

/// Scans the segments in id order. Returns those holding unacknowledged records, and the
/// next record id.
fn recover(dir: &Path, ack: u64, rec: &mut Recovered) -> Result<(Vec<Seg>, u64), Error> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(ctx(dir, "read dir"))? {
        let name = entry.map_err(ctx(dir, "read dir"))?.file_name();
        let stem = name.to_str().and_then(|n| n.strip_suffix(".seg"));
        ids.extend(
            stem.filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok()),
        );
    }
    ids.sort_unstable();
    let (mut segs, mut next_id) = (Vec::new(), ack);
    for (i, &first_id) in ids.iter().enumerate() {
        let path = seg_path(dir, first_id);
        // Ids of a damaged segment are unknown: never hand out its first one again.
        next_id = next_id.max(first_id);
        if ids.get(i + 1).is_some_and(|&n| n <= ack) {
            remove(&path)?; // all acknowledged: the crash came before its deletion
            continue;
        }
        let (len, last, unacked) = scan_segment(&path, first_id, ack, rec)?;
        next_id = next_id.max(last.map_or(0, |l| l + 1));
        if unacked == 0 {
            remove(&path)?;
        } else {
            segs.push(Seg {
                first_id,
                path,
                len,
            });
        }
    }
    Ok((segs, next_id))
}

/// Opens the buffer in `dir` (created if missing) and recovers what is on disk; the
/// reader replays it first. The writer starts a new segment.
pub fn open(dir: &Path, opts: Options) -> Result<(Writer, Reader, Recovered), Error> {
    fs::create_dir_all(dir).map_err(ctx(dir, "create dir"))?;
    let (ack, ack_reset) = read_ack(dir)?;
    let mut rec = Recovered {
        ack_reset,
        ..Recovered::default()
    };
    let (segs, next_id) = recover(dir, ack, &mut rec)?;
    let mut state = State {
        segs: segs.into(),
        size: rec.bytes,
        ..State::default()
    };
    (state.ack_pos, state.persisted_ack) = (ack, ack);
    let (state, cond, io) = (Mutex::new(state), Condvar::new(), Mutex::new(()));
    let sh = Arc::new(Shared {
        dir: dir.to_path_buf(),
        opts,
        state,
        cond,
        io,
    });
    let mut writer = Writer {
        sh: sh.clone(),
        file: None,
        path: PathBuf::new(),
        seg_len: 0,
        next_id,
        broken: false,
    };
    writer.roll()?;
    Ok((
        writer,
        Reader {
            sh,
            cur: None,
            min_id: ack,
        },
        rec,
    ))
}

/// The appending side. Dropping it closes the buffer for the reader.
pub struct Writer {
    sh: Arc<Shared>,
    file: Option<Arc<File>>,
    path: PathBuf,
    seg_len: u64,
    next_id: u64,
    /// A write failed mid-record: the segment's tail is unknown, so roll before the next.
    broken: bool,
}

impl Writer {
    /// Appends one record, or fails with [`Error::Full`] at once when it would take the
    /// buffer past `max_size`. A record larger than `max_size` is still accepted into an
    /// empty buffer, so one huge batch cannot wedge the pipeline forever.
    pub fn try_append(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.append_inner(payload, false)
    }

    /// Like [`Writer::try_append`], but waits until acks free enough space; fails with
    /// [`Error::Closed`] if the reader is dropped meanwhile.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.append_inner(payload, true)
    }

    /// Bytes of unacknowledged records, headers included.
    pub fn size(&self) -> u64 {
        self.sh.lock().size
    }

    /// Syncs and closes, returning the errors `Drop` would have to swallow.
    pub fn close(mut self) -> Result<(), Error> {
        self.finish()
    }

    fn append_inner(&mut self, payload: &[u8], wait: bool) -> Result<(), Error> {
        let too_large = |_| Error::TooLarge { len: payload.len() };
        let size = HEADER + u64::from(u32::try_from(payload.len()).map_err(too_large)?);
        let mut st = self.sh.lock();
        if let Some(e) = st.writer_err.take() {
            return Err(e);
        }
        while st.size != 0 && st.size + size > self.sh.opts.max_size {
            match (wait, st.reader_closed) {
                (false, _) => return Err(Error::Full),
                (true, true) => return Err(Error::Closed),
                (true, false) => {
                    st = self
                        .sh
                        .cond
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner)
                }
            }
        }
        st.size += size; // reserved: the write happens off the lock
        drop(st);
        let res = self.write_record(payload, size);
        let mut st = self.sh.lock();
        if res.is_err() {
            st.size -= size;
            return res;
        }
        st.segs.back_mut().expect("writer segment").len = self.seg_len;
        st.dirty |= matches!(self.sh.opts.sync, Sync::Interval(_));
        drop(st);
        self.sh.cond.notify_all();
        self.sh.tick(false, false);
        Ok(())
    }

    fn write_record(&mut self, payload: &[u8], size: u64) -> Result<(), Error> {
        let full = self.seg_len > MAGIC_LEN && self.seg_len + size > self.sh.opts.segment_size;
        if self.broken || full || self.file.is_none() {
            self.roll()?;
        }
        // Consumed even if the write fails, so a half-written record's id stays unique.
        let id = self.next_id;
        self.next_id += 1;
        let mut header = [0u8; HEADER as usize];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        header[8..].copy_from_slice(&id.to_le_bytes());
        let file = self.file.as_deref().expect("rolled");
        // Header and payload in one system call, without copying the
        // payload into a buffer of its own first.
        let mut res = write_parts(file, &header, payload).map_err(ctx(&self.path, "write"));
        if res.is_ok() && self.sh.opts.sync == Sync::Always {
            res = file.sync_data().map_err(ctx(&self.path, "fdatasync"));
        }
        match res {
            Ok(()) => self.seg_len += size,
            Err(_) => self.broken = true,
        }
        res
    }

    /// Starts a new segment named by the next id, after syncing the current one.
    fn roll(&mut self) -> Result<(), Error> {
        let interval = matches!(self.sh.opts.sync, Sync::Interval(_));
        if let (Some(f), false) = (&self.file, self.broken) {
            match interval {
                // Synced off the writer's path, with the next periodic sync.
                true => self.sh.lock().unsynced.push((f.clone(), self.path.clone())),
                false => f.sync_data().map_err(ctx(&self.path, "fdatasync"))?,
            }
        }
        let (dir, first_id) = (&self.sh.dir, self.next_id);
        let path = seg_path(dir, first_id);
        let f = OpenOptions::new().write(true).create_new(true).open(&path);
        let mut f = f.map_err(ctx(&path, "create"))?;
        if let Err(e) = f.write_all(MAGIC) {
            let _ = fs::remove_file(&path); // so the retry can create it again
            return Err(ctx(&path, "write")(e));
        }
        let f = Arc::new(f);
        {
            let mut st = self.sh.lock();
            st.segs.push_back(Seg {
                first_id,
                path: path.clone(),
                len: MAGIC_LEN,
            });
            st.file = Some((f.clone(), path.clone()));
        }
        self.sh.cond.notify_all();
        (self.file, self.path, self.seg_len, self.broken) = (Some(f), path, MAGIC_LEN, false);
        // Make the new name durable, or a power loss could orphan its synced records.
        if interval {
            self.sh.lock().dir_unsynced = true;
            return Ok(());
        }
        let sync_dir = File::open(dir).and_then(|d| d.sync_all());
        sync_dir.map_err(ctx(dir, "fsync dir"))
    }

    /// Idempotent: `close` and then `Drop` both come here.
    fn finish(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let res = match self.broken {
            false => file.sync_data().map_err(ctx(&self.path, "fdatasync")),
            true => Ok(()),
        };
        {
            let mut st = self.sh.lock();
            (st.dirty, st.writer_closed) = (false, true);
        }
        self.sh.cond.notify_all();
        self.sh.tick(true, true);
        let deferred = self.sh.lock().writer_err.take();
        res.and(deferred.map_or(Ok(()), Err))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The reader's position: `off` in the segment starting with `first_id`.
struct Cursor {
    first_id: u64,
    path: PathBuf,
    file: File,
    off: u64,
    expect: u64,
}

enum Step {
    /// The current segment has complete records up to this length.
    Read(u64),
    Open(u64, PathBuf),
    Wait,
    Closed,
}

/// The sink's side: records in order, read through its own file handles.
pub struct Reader {
    sh: Arc<Shared>,
    cur: Option<Cursor>,
    /// Records below the recovered ack position were delivered before the restart.
    min_id: u64,
}

impl Reader {
    /// The next record, waiting for the writer; `Ok(None)` once the writer is dropped and
    /// every record has been read.
    #[allow(clippy::should_implement_trait)] // fallible and blocking: not an Iterator
    pub fn next(&mut self) -> Result<Option<Record>, Error> {
        match self.next_inner(None)? {
            Next::Record(r) => Ok(Some(r)),
            Next::Closed => Ok(None),
            Next::Empty => unreachable!("no deadline"),
        }
    }

    /// Like [`Reader::next`], but gives up after `t` with [`Next::Empty`].
    pub fn next_timeout(&mut self, t: Duration) -> Result<Next, Error> {
        self.next_inner(Some(Instant::now() + t))
    }

    /// A handle that runs the periodic housekeeping (syncs, ack writes)
    /// while the reader is blocked elsewhere, e.g. behind a sink that is down.
    pub fn ticker(&self) -> Ticker {
        Ticker {
            sh: self.sh.clone(),
        }
    }

    pub fn acker(&self) -> Acker {
        Acker {
            sh: self.sh.clone(),
        }
    }

    /// Persists the ack position and closes, returning the errors `Drop` would swallow.
    pub fn close(mut self) -> Result<(), Error> {
        self.finish()
    }

    fn next_inner(&mut self, deadline: Option<Instant>) -> Result<Next, Error> {
        self.sh.tick(false, true);
        loop {
            let mut st = self.sh.lock();
            if let Some(e) = st.reader_err.take() {
                return Err(e);
            }
            match self.step(&st) {
                Step::Read(limit) => {
                    drop(st);
                    if let Some(r) = self.read_record(limit)? {
                        return Ok(Next::Record(r));
                    }
                }
                Step::Open(first_id, path) => {
                    drop(st);
                    let file = File::open(&path).map_err(ctx(&path, "open"))?;
                    let (off, expect) = (MAGIC_LEN, first_id);
                    self.cur = Some(Cursor {
                        first_id,
                        path,
                        file,
                        off,
                        expect,
                    });
                }
                Step::Closed => return Ok(Next::Closed),
                Step::Wait => {
                    // Wake at least every ACK_INTERVAL for overdue syncs and ack writes.
                    let mut wait = ACK_INTERVAL;
                    if let Some(d) = deadline {
                        wait = wait.min(d.saturating_duration_since(Instant::now()));
                        if wait.is_zero() {
                            return Ok(Next::Empty);
                        }
                    }
                    drop(self.sh.cond.wait_timeout(st, wait));
                    self.sh.tick(false, true);
                }
            }
        }
    }

    fn step(&self, st: &State) -> Step {
        let after = self.cur.as_ref().map(|c| (c.first_id, c.off));
        if let Some((first_id, off)) = after {
            let seg = st.segs.iter().find(|s| s.first_id == first_id);
            if let Some(s) = seg.filter(|s| s.len > off) {
                return Step::Read(s.len);
            }
        }
        // The current segment is done (or was never opened): go to the next one.
        match st
            .segs
            .iter()
            .find(|s| after.is_none_or(|(a, _)| s.first_id > a))
        {
            Some(s) => Step::Open(s.first_id, s.path.clone()),
            None if st.writer_closed => Step::Closed,
            None => Step::Wait,
        }
    }

    /// Reads the record at the cursor, never past `limit` (what the writer has completed).
    /// `None` for a record acknowledged before the restart.
    fn read_record(&mut self, limit: u64) -> Result<Option<Record>, Error> {
        let c = self.cur.as_mut().expect("step opened it");
        let (start, path) = (c.off, &c.path);
        let bad = |reason| Error::Corrupt {
            path: path.clone(),
            offset: start,
            reason,
        };
        if start + HEADER > limit {
            return Err(bad("header past the written end"));
        }
        let mut h = [0u8; 16];
        c.file
            .seek(SeekFrom::Start(start))
            .map_err(ctx(path, "seek"))?;
        c.file.read_exact(&mut h).map_err(ctx(path, "read"))?;
        let (len, crc, id) = parse_header(h);
        let end = start + HEADER + u64::from(len);
        if end > limit {
            return Err(bad("length past the written end"));
        }
        if id != c.expect {
            return Err(bad("unexpected record id"));
        }
        let mut payload = Vec::new();
        if id >= self.min_id {
            payload.reserve_exact(len as usize);
            let got = (&mut c.file)
                .take(u64::from(len))
                .read_to_end(&mut payload)
                .map_err(ctx(path, "read"))?;
            if got != len as usize {
                return Err(bad("length past the written end"));
            }
            if crc32fast::hash(&payload) != crc {
                return Err(bad("crc mismatch"));
            }
        }
        (c.off, c.expect) = (end, id + 1);
        if id < self.min_id {
            return Ok(None);
        }
        self.sh.lock().inflight.push_back((id, end - start, false));
        Ok(Some(Record { id, payload }))
    }

    /// Idempotent: `close` and then `Drop` both come here.
    fn finish(&mut self) -> Result<(), Error> {
        self.sh.tick(true, true);
        let err = {
            let mut st = self.sh.lock();
            st.reader_closed = true;
            st.reader_err.take()
        };
        self.sh.cond.notify_all();
        err.map_or(Ok(()), Err)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Reports delivery; cheap to clone and usable from any thread.
/// Runs overdue syncs and ack writes when called: see [`Reader::ticker`].
#[derive(Clone)]
pub struct Ticker {
    sh: Arc<Shared>,
}

impl Ticker {
    pub fn tick(&self) {
        self.sh.tick(false, true);
    }
}

#[derive(Clone)]
pub struct Acker {
    sh: Arc<Shared>,
}

impl Acker {
    /// Marks record `id` delivered. Acks may come in any order: the ack position (and the
    /// freed size) moves to the end of the longest delivered prefix. Ids the reader never
    /// handed out, or already acknowledged, are ignored. I/O errors while persisting the
    /// position are returned by the reader's next call.
    pub fn ack(&self, id: u64) {
        let reader_closed = {
            let mut st = self.sh.lock();
            let Ok(i) = st.inflight.binary_search_by_key(&id, |d| d.0) else {
                return;
            };
            st.inflight[i].2 = true;
            let freed = st.inflight.front().is_some_and(|d| d.2);
            while let Some(&(id, size, true)) = st.inflight.front() {
                st.inflight.pop_front();
                (st.size, st.ack_pos) = (st.size - size, id + 1);
            }
            if freed {
                self.sh.cond.notify_all();
            }
            st.reader_closed
        };
        // With the reader gone nobody else would persist it.
        self.sh.tick(reader_closed, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use tempfile::TempDir;

    fn opts(max_size: u64, segment_size: u64) -> Options {
        Options {
            max_size,
            segment_size,
            ..Options::default()
        }
    }

    fn fresh(o: Options) -> (TempDir, Writer, Reader) {
        let d = tempfile::tempdir().unwrap();
        let (w, r, rec) = open(d.path(), o).unwrap();
        assert_eq!(rec, Recovered::default());
        (d, w, r)
    }

    /// Appends `n` records, record i being `len` bytes of value i.
    fn fill(w: &mut Writer, n: u8, len: usize) {
        (0..n).for_each(|i| w.append(&vec![i; len]).unwrap());
    }

    /// Ids of everything readable right now, without waiting.
    fn drain(r: &mut Reader) -> Vec<u64> {
        let mut out = Vec::new();
        while let Next::Record(rec) = r.next_timeout(Duration::ZERO).unwrap() {
            assert_eq!(rec.payload[0], rec.id as u8, "payload of {}", rec.id);
            out.push(rec.id);
        }
        out
    }

    /// Joins `t`, failing instead of hanging if it is still blocked after 2 s.
    fn join<T>(t: thread::JoinHandle<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "thread still blocked");
            thread::sleep(Duration::from_millis(1));
        }
        t.join().unwrap()
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    fn segments(dir: &Path) -> Vec<String> {
        let names = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name());
        let mut v: Vec<_> = names.filter_map(|n| n.into_string().ok()).collect();
        v.retain(|n| n.ends_with(".seg"));
        v.sort();
        v
    }

    #[test]
    fn write_read_ack_in_order() {
        let (_d, mut w, mut r) = fresh(Options::default());
        fill(&mut w, 3, 10);
        assert_eq!(w.size(), 3 * 26);
        let recs: Vec<_> = (0..3).map(|_| r.next().unwrap().unwrap()).collect();
        assert_eq!(
            recs[2],
            Record {
                id: 2,
                payload: vec![2; 10]
            }
        );
        recs.iter().for_each(|rec| r.acker().ack(rec.id));
        assert_eq!(w.size(), 0);
        assert_eq!(
            r.next_timeout(Duration::from_millis(5)).unwrap(),
            Next::Empty
        );
    }

    #[test]
    fn reopen_replays_unacked_only() {
        let (d, mut w, mut r) = fresh(Options::default());
        fill(&mut w, 3, 10);
        assert_eq!(drain(&mut r), [0, 1, 2]);
        drop((w, r));
        let (w, mut r, rec) = open(d.path(), Options::default()).unwrap();
        assert_eq!((rec.records, rec.bytes, w.size()), (3, 78, 78));
        assert_eq!(drain(&mut r), [0, 1, 2]);
        r.acker().ack(0);
        r.acker().ack(1);
        drop((w, r));
        let (w, mut r, rec) = open(d.path(), Options::default()).unwrap();
        assert_eq!((rec.records, rec.bytes, w.size()), (1, 26, 26));
        assert_eq!(drain(&mut r), [2]);
    }

    #[test]
    fn out_of_order_acks_move_over_prefix_only() {
        let (d, mut w, mut r) = fresh(Options::default());
        fill(&mut w, 4, 10);
        assert_eq!(drain(&mut r).len(), 4);
        let a = r.acker();
        a.ack(2);
        assert_eq!(w.size(), 4 * 26, "2 is not a prefix");
        a.ack(0);
        assert_eq!(w.size(), 3 * 26);
        a.ack(0); // duplicate: ignored
        a.ack(1);
        assert_eq!(w.size(), 26, "1 completes the prefix through 2");
        r.close().unwrap(); // persists the position on its own
        std::mem::forget(w);
        let (_w, mut r, rec) = open(d.path(), Options::default()).unwrap();
        assert_eq!((rec.records, drain(&mut r)), (1, vec![3]));
    }

    #[test]
    fn torn_tail_is_truncated_and_counted() {
        let (d, mut w, r) = fresh(Options::default());
        fill(&mut w, 3, 10);
        drop((w, r));
        let seg = seg_path(d.path(), 0);
        assert_eq!(fs::metadata(&seg).unwrap().len(), MAGIC_LEN + 78);
        // A header promising 1000 bytes with 4 written; then half a header.
        let long = [&1000u32.to_le_bytes()[..], &[0; 12], b"abcd"].concat();
        for garbage in [long, vec![7; 5]] {
            append_bytes(&seg, &garbage);
            let (_w, mut r, rec) = open(d.path(), Options::default()).unwrap();
            assert_eq!(rec.truncated_bytes, garbage.len() as u64);
            assert_eq!((rec.records, rec.corrupt_records), (3, 0));
            assert_eq!(fs::metadata(&seg).unwrap().len(), MAGIC_LEN + 78);
            assert_eq!(drain(&mut r), [0, 1, 2]);
        }
    }

    #[test]
    fn corrupt_middle_record_skips_rest_of_segment_only() {
        let o = || opts(1 << 20, 300); // two 116-byte records per segment
        let (d, mut w, r) = fresh(o());
        fill(&mut w, 6, 100);
        drop((w, r));
        assert_eq!(segments(d.path()).len(), 3);
        let seg = seg_path(d.path(), 2);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[(MAGIC_LEN + HEADER + 10) as usize] ^= 0x40; // record 2, followed by 3
        fs::write(&seg, bytes).unwrap();
        let (mut w, mut r, rec) = open(d.path(), o()).unwrap();
        assert_eq!(
            (rec.corrupt_records, rec.skipped_bytes, rec.truncated_bytes),
            (1, 232, 0)
        );
        assert_eq!((rec.records, w.size()), (4, 4 * 116));
        assert_eq!(drain(&mut r), [0, 1, 4, 5]);
        w.append(&[6]).unwrap();
        assert_eq!(drain(&mut r), [6]);
    }

    #[test]
    fn foreign_segment_is_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::write(seg_path(d.path(), 7), b"NOTWEIR!and more").unwrap();
        let err = open(d.path(), Options::default())
            .err()
            .expect("must refuse");
        assert!(
            matches!(&err, Error::Format { path } if path.ends_with("00000000000000000007.seg"))
        );
        assert!(err.to_string().contains("not a weir buffer segment"));
    }

    #[test]
    fn full_blocks_until_acked() {
        let (_d, mut w, mut r) = fresh(opts(3 * 26, 1 << 20));
        (0..3u8).for_each(|i| w.try_append(&[i; 10]).unwrap());
        assert!(matches!(w.try_append(&[3; 10]), Err(Error::Full)));
        let t = thread::spawn(move || w.append(&[3; 10]).map(|()| w));
        thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "append must wait for space");
        let (a, first) = (r.acker(), r.next().unwrap().unwrap().id);
        thread::spawn(move || a.ack(first)).join().unwrap();
        let mut w = join(t).unwrap();
        assert_eq!(w.size(), 3 * 26);
        assert_eq!(drain(&mut r), [1, 2, 3]);
        // Full again: dropping the reader releases a waiting append with Closed.
        let t = thread::spawn(move || w.append(&[4; 10]));
        thread::sleep(Duration::from_millis(20));
        drop(r);
        assert!(matches!(join(t), Err(Error::Closed)));
    }

    #[test]
    fn oversized_record_is_accepted_into_empty_buffer() {
        let (_d, mut w, mut r) = fresh(opts(50, 1 << 20));
        w.try_append(&[0; 100]).unwrap();
        assert!(matches!(w.try_append(&[1]), Err(Error::Full)));
        r.acker().ack(r.next().unwrap().unwrap().id);
        w.try_append(&[1]).unwrap();
    }

    #[test]
    fn segments_roll_and_acked_ones_are_deleted() {
        let o = || opts(1 << 20, 300);
        let (d, mut w, mut r) = fresh(o());
        fill(&mut w, 10, 100);
        assert_eq!(segments(d.path()).len(), 5);
        let a = r.acker();
        drain(&mut r).into_iter().for_each(|id| a.ack(id));
        thread::sleep(ACK_INTERVAL);
        assert_eq!(r.next_timeout(Duration::ZERO).unwrap(), Next::Empty); // persists the ack
        assert_eq!(
            segments(d.path()),
            ["00000000000000000008.seg"],
            "writer's stays"
        );
        drop((w, r));
        // Its records are acked too, so reopening deletes it and starts at id 10.
        let (mut w, mut r, rec) = open(d.path(), o()).unwrap();
        assert_eq!(rec.records, 0);
        assert_eq!(segments(d.path()), ["00000000000000000010.seg"]);
        w.append(&[10]).unwrap();
        assert_eq!(drain(&mut r), [10]);
    }

    #[test]
    fn writer_drop_lets_reader_finish_then_close() {
        let (_d, mut w, mut r) = fresh(Options::default());
        assert_eq!(
            r.next_timeout(Duration::from_millis(5)).unwrap(),
            Next::Empty
        );
        fill(&mut w, 3, 1);
        w.close().unwrap();
        for id in 0..3 {
            assert_eq!(r.next().unwrap().map(|rec| rec.id), Some(id));
        }
        let closed = r.next_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(closed, Next::Closed);
        assert_eq!(r.next().unwrap(), None);
    }

    #[test]
    fn crash_without_drop_replays_unacked() {
        let o = || Options {
            sync: Sync::Always,
            ..opts(1 << 20, 200)
        };
        let (d, mut w, mut r) = fresh(o());
        fill(&mut w, 6, 50);
        assert_eq!(drain(&mut r).len(), 6);
        let a = r.acker();
        a.ack(0); // the first ack is persisted at once
        a.ack(1); // these fall within the 100 ms window: they may be replayed
        a.ack(2);
        std::mem::forget((w, r));
        let (mut w, mut r, rec) = open(d.path(), o()).unwrap();
        let got = drain(&mut r);
        assert!((1..=3).contains(&got[0]), "replayed {got:?}");
        assert_eq!(got, (got[0]..6).collect::<Vec<_>>());
        assert_eq!(rec.records, got.len() as u64);
        w.append(&[6]).unwrap();
        assert_eq!(drain(&mut r), [6]);
    }

    #[test]
    fn ids_increase_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        // Round 0 acks nothing, so round 1 replays 0 and 1; later ids follow the ack file.
        for (round, want) in [vec![0, 1], vec![0, 1, 2, 3], vec![4, 5]]
            .into_iter()
            .enumerate()
        {
            let (mut w, mut r, _) = open(d.path(), Options::default()).unwrap();
            (0..2).for_each(|i| w.append(&[(2 * round + i) as u8]).unwrap());
            let got = drain(&mut r);
            assert_eq!(got, want);
            got.iter()
                .filter(|_| round > 0)
                .for_each(|&id| r.acker().ack(id));
        }
        // Even with every segment gone, the ack file keeps ids from going back.
        segments(d.path())
            .iter()
            .for_each(|n| fs::remove_file(d.path().join(n)).unwrap());
        let (mut w, mut r, _) = open(d.path(), Options::default()).unwrap();
        w.append(&[6]).unwrap();
        assert_eq!(drain(&mut r), [6]);
    }

    #[test]
    fn reader_stops_at_what_the_writer_completed() {
        let (d, mut w, mut r) = fresh(Options::default());
        fill(&mut w, 1, 10);
        // A record the writer is still writing: on disk, but not yet reported complete.
        let partial = [
            &10u32.to_le_bytes()[..],
            &[0; 4],
            &1u64.to_le_bytes(),
            &[1; 3],
        ];
        append_bytes(&seg_path(d.path(), 0), &partial.concat());
        assert_eq!(drain(&mut r), [0]);
        w.append(&[1; 10]).unwrap(); // overwrites those bytes, as the real write would finish
        assert_eq!(drain(&mut r), [1]);
    }

    #[test]
    fn concurrent_writer_and_reader() {
        let (_d, mut w, mut r) = fresh(opts(2000, 1000));
        let t = thread::spawn(move || (0..300u32).for_each(|i| w.append(&[i as u8; 40]).unwrap()));
        let (a, mut n) = (r.acker(), 0);
        while let Next::Record(rec) = r.next_timeout(Duration::from_secs(2)).unwrap() {
            assert_eq!((rec.id, rec.payload), (n, vec![n as u8; 40]));
            let a = a.clone();
            thread::spawn(move || a.ack(rec.id)).join().unwrap();
            n += 1;
        }
        join(t);
        assert_eq!(n, 300);
    }

    #[test]
    fn handles_are_send() {
        fn send<T: Send>() {}
        fn shared<T: Send + std::marker::Sync>() {}
        send::<Writer>();
        send::<Reader>();
        shared::<Acker>();
        shared::<Error>();
    }
}
