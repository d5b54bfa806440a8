//! Decoding a source's lines on every core, batches kept in order.
//!
//! Splitting a stream into lines is cheap; decoding JSON is most of what a
//! source costs, so one reading thread alone holds a pipeline to one core.
//! The source's thread still splits its lines (line numbers, over-long
//! lines and checkpoint offsets stay where they are known), copies each
//! batch's worth of lines into a job, and the pool's threads decode jobs
//! side by side. Batches leave in the order their lines were read: a job's
//! batch is sent only after the batches of the jobs before it, so sinks and
//! checkpoints see the stream exactly as one thread would have made it.

use crate::codec::{timestamp, Decoder, Line};
use crate::topology::{Ack, Batch, Closed, Output};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use weir_layout::BatchBuf;

/// Lines waiting to be decoded into one batch: their bytes, each followed
/// by `\n` (a line handed out by the splitter holds none).
struct Job {
    bytes: Vec<u8>,
    lines: usize,
    /// From which line of the job on the lines are of which origin, and
    /// the number the first of them has there.
    origins: Vec<(usize, Arc<str>, u64)>,
    /// Lines that were cut at `max_line_bytes`: index in the job, and the
    /// length of the whole line.
    truncated: Vec<(usize, usize)>,
}

impl Job {
    fn new(bytes: Vec<u8>) -> Job {
        Job {
            bytes,
            lines: 0,
            origins: Vec::new(),
            truncated: Vec::new(),
        }
    }
}

/// A job decoded: its batch, how many lines became `_error` events, and
/// its buffer back for the next job.
struct Decoded {
    batch: BatchBuf,
    errors: u64,
    bytes: Vec<u8>,
}

/// A job sent to the pool, with the tokens its batch carries.
struct Pending {
    done: Receiver<Decoded>,
    acks: Vec<Ack>,
}

/// Decode threads shared by one source, and the jobs it has in flight.
pub struct Pool {
    jobs: async_channel::Sender<(Job, SyncSender<Decoded>)>,
    filling: Job,
    pending: VecDeque<Pending>,
    /// Jobs in flight before the source waits for the oldest.
    depth: usize,
    spare: Vec<Vec<u8>>,
}

impl Pool {
    /// `threads` decoders like `decoder`, named after `source`, each
    /// making batches of up to `batch_size` events.
    pub fn new(source: &str, threads: usize, decoder: &Decoder, batch_size: usize) -> Pool {
        let depth = threads * 2;
        let (tx, rx) = async_channel::bounded::<(Job, SyncSender<Decoded>)>(depth);
        for i in 0..threads {
            let (rx, mut decoder) = (rx.clone(), decoder.clone());
            std::thread::Builder::new()
                .name(format!("{source}-decode#{i}"))
                .spawn(move || {
                    while let Ok((job, done)) = rx.recv_blocking() {
                        // The source may have stopped; its jobs go with it.
                        let _ = done.send(decode(&mut decoder, job, batch_size));
                    }
                })
                .expect("spawn decode thread");
        }
        Pool {
            jobs: tx,
            filling: Job::new(Vec::new()),
            pending: VecDeque::new(),
            depth,
            spare: Vec::new(),
        }
    }

    /// Lines in the job being filled.
    pub fn lines(&self) -> usize {
        self.filling.lines
    }

    /// Adds line `line_no` of `origin` to the job being filled.
    pub fn push(&mut self, line: Line<'_>, origin: &Arc<str>, line_no: u64) {
        let job = &mut self.filling;
        let same = job.origins.last().is_some_and(|(first, o, no)| {
            Arc::ptr_eq(o, origin) && no + (job.lines - first) as u64 == line_no
        });
        if !same {
            job.origins.push((job.lines, origin.clone(), line_no));
        }
        let bytes = match line {
            Line::Full(b) => b,
            Line::Truncated { head, len } => {
                job.truncated.push((job.lines, len));
                head
            }
        };
        job.bytes.extend_from_slice(bytes);
        job.bytes.push(b'\n');
        job.lines += 1;
    }

    /// Sends the job being filled (if it has lines) to be decoded, with
    /// `acks` for its batch; then sends on the batches decoded so far in
    /// order, waiting for the oldest while too many are in flight.
    pub fn submit(&mut self, acks: Vec<Ack>, out: &Output) -> Result<(), Closed> {
        if self.filling.lines > 0 {
            let next = Job::new(self.spare.pop().unwrap_or_default());
            let job = std::mem::replace(&mut self.filling, next);
            let (tx, rx) = sync_channel(1);
            self.jobs.send_blocking((job, tx)).map_err(|_| Closed)?;
            self.pending.push_back(Pending { done: rx, acks });
        }
        while let Some(p) = self.pending.front() {
            let decoded = match p.done.try_recv() {
                Ok(d) => d,
                Err(_) if self.pending.len() <= self.depth => break,
                Err(_) => p.done.recv().map_err(|_| Closed)?,
            };
            self.send(decoded, out)?;
        }
        Ok(())
    }

    /// Waits for every job in flight and sends its batch on.
    pub fn settle(&mut self, out: &Output) -> Result<(), Closed> {
        while let Some(p) = self.pending.front() {
            let decoded = p.done.recv().map_err(|_| Closed)?;
            self.send(decoded, out)?;
        }
        Ok(())
    }

    fn send(&mut self, decoded: Decoded, out: &Output) -> Result<(), Closed> {
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        out.stats
            .errors
            .fetch_add(decoded.errors, Ordering::Relaxed);
        if self.spare.len() < self.depth {
            self.spare.push(decoded.bytes);
        }
        match decoded.batch.is_empty() {
            // Lines that made no event still let their tokens go.
            true => Ok(()),
            false => out.send(Batch::new(decoded.batch, p.acks)),
        }
    }
}

/// Decodes a job's lines, on a pool thread.
fn decode(decoder: &mut Decoder, job: Job, batch_size: usize) -> Decoded {
    let mut batch = BatchBuf::with_capacity(batch_size.max(job.lines), job.bytes.len() + 64);
    let now = timestamp::now_ns();
    let errors = decoder.errors;
    let (mut origins, mut truncated) = (
        job.origins.iter().peekable(),
        job.truncated.iter().peekable(),
    );
    let (mut origin, mut first, mut line_no) = ("", 0, 0);
    let mut rest = &job.bytes[..];
    for i in 0..job.lines {
        if let Some((from, o, no)) = origins.next_if(|(from, ..)| *from == i) {
            (origin, first, line_no) = (o, *from, *no);
        }
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let bytes = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        let line = match truncated.next_if(|(at, _)| *at == i) {
            Some(&(_, len)) => Line::Truncated { head: bytes, len },
            None => Line::Full(bytes),
        };
        decoder.decode(&mut batch, line, origin, line_no + (i - first) as u64, now);
    }
    let mut bytes = job.bytes;
    bytes.clear();
    Decoded {
        batch,
        errors: decoder.errors - errors,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Batcher, LineReader};
    use crate::codec::{Decoder, Format};
    use crate::topology::{Output, Stats};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// Every event of every batch `threads` decoders make of `files`, fed
    /// in pieces of `chunk` bytes: (event as JSON, events in its batch).
    fn decoded(threads: usize, files: &[(&str, &[u8])], chunk: usize) -> (Vec<String>, u64) {
        let (tx, rx) = async_channel::unbounded();
        let stats = Arc::new(Stats::default());
        let mut out = Batcher::new(Output::new(vec![tx], stats.clone()), 4).decode_threads(threads);
        let decoder = Decoder::new(Format::Json, "timestamp", 60);
        out.start_decoders("test", &decoder);
        let mut readers: Vec<LineReader> = files
            .iter()
            .map(|(name, _)| LineReader::new(decoder.clone(), name.to_string()))
            .collect();
        // The files' pieces interleaved, as a source reading several does.
        let longest = files.iter().map(|f| f.1.len()).max().unwrap_or(0);
        for at in (0..longest).step_by(chunk) {
            for (reader, (_, bytes)) in readers.iter_mut().zip(files) {
                let piece = bytes
                    .get(at..(at + chunk).min(bytes.len()))
                    .unwrap_or_default();
                reader.feed(piece, &mut out).unwrap();
            }
        }
        for r in &mut readers {
            r.finish(&mut out).unwrap();
        }
        drop(out);
        let mut events = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            assert!(batch.events.len() <= 4, "a batch over batch_size");
            for e in batch.events.iter() {
                let mut json = Vec::new();
                crate::codec::json_encode::write_event(&mut json, &e);
                events.push(format!(
                    "{} of {}",
                    String::from_utf8_lossy(&json),
                    batch.events.len()
                ));
            }
        }
        (events, stats.errors.load(Ordering::Relaxed))
    }

    #[test]
    fn pooled_decoding_makes_the_batches_one_thread_makes() {
        let a: &[u8] = b"{\"timestamp\":\"2026-01-01T00:00:00Z\",\"n\":1}\n\
            not json\n\
            {\"timestamp\":\"2026-01-01T00:00:01Z\",\"n\":2}\r\n\
            {\"timestamp\":\"2026-01-01T00:00:02Z\",\"message\":\"a line far longer than sixty bytes, cut\"}\n\
            {\"n\":3}\n{\"n\":4}\n{\"n\":5}\n{\"n\":6}\nlast without newline";
        let b: &[u8] = b"{\"n\":10}\n{\"n\":11}\n{broken\n{\"n\":12}\n";
        let files = [("a.log", a), ("b.log", b)];
        for chunk in [1, 7, 64, 4096] {
            let (one, one_errors) = decoded(1, &files, chunk);
            let (pooled, pooled_errors) = decoded(3, &files, chunk);
            assert_eq!(pooled, one, "pieces of {chunk} bytes");
            assert_eq!(pooled_errors, one_errors);
            assert_eq!(
                one_errors, 4,
                "not json, too long, broken, last line: {one:#?}"
            );
            assert!(one.iter().any(|e| e.contains("a.log:2:")), "{one:?}");
            assert!(one.iter().any(|e| e.contains("b.log:3:")), "{one:?}");
        }
    }
}
