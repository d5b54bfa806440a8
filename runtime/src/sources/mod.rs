//! Where events come from. Each source reads, decodes into batches of up to
//! `batch_size` events, and sends a batch when it is full or when the source
//! would otherwise wait (end of file, idle input, a rate-limit pause).

pub mod component;
pub mod decode;
pub mod file;
pub mod fluent_forward;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod net;
pub mod prometheus_scrape;
pub mod stdin;
pub mod syslog;

pub use component::Source;

use crate::codec::{timestamp, Decoder, Line, LineSplitter};
use crate::topology::{Ack, Batch, Closed, Output, Stats};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weir_layout::BatchBuf;

/// Collects events into batches and sends them on.
pub struct Batcher {
    batch: BatchBuf,
    max: usize,
    out: Output,
    /// Where the batch's events end in the files they came from, for a
    /// source that checkpoints what its sinks accepted.
    marks: Option<file::Marks>,
    /// Threads a source of lines may decode them on (`settings.decode_threads`).
    threads: usize,
    /// Where lines are decoded when that is more than one.
    pool: Option<decode::Pool>,
}

impl Batcher {
    pub fn new(out: Output, max: usize) -> Self {
        Batcher {
            batch: BatchBuf::with_capacity(max, max * 256),
            max,
            out,
            marks: None,
            threads: 1,
            pool: None,
        }
    }

    /// Lets a source of lines decode them on `threads` threads.
    pub fn decode_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// From now on, lines are decoded like `decoder` does on the threads
    /// allowed (see [`decode`]), when that is more than one.
    pub fn start_decoders(&mut self, source: &str, decoder: &Decoder) {
        if self.threads > 1 && self.pool.is_none() {
            self.pool = Some(decode::Pool::new(source, self.threads, decoder, self.max));
        }
    }

    /// Each batch sent from now on carries a token that checkpoints its
    /// files' positions once every sink accepted it.
    pub fn with_marks(mut self, marks: file::Marks) -> Self {
        self.marks = Some(marks);
        self
    }

    pub fn is_full(&self) -> bool {
        match &self.pool {
            Some(pool) => pool.lines() >= self.max,
            None => self.batch.len() >= self.max,
        }
    }

    /// Decodes line `line_no` of `origin` into the batch, or has it decoded.
    fn push_line(
        &mut self,
        decoder: &mut Decoder,
        line: Line<'_>,
        origin: &Arc<str>,
        line_no: u64,
        now: i64,
    ) {
        match &mut self.pool {
            Some(pool) => pool.push(line, origin, line_no),
            None => decoder.decode(&mut self.batch, line, origin, line_no, now),
        }
    }

    /// Sends what is collected, if anything.
    pub fn flush(&mut self) -> Result<(), Closed> {
        self.flush_with(Vec::new())
    }

    /// Sends what is collected with the tokens its source waits on; lines
    /// still being decoded are waited for.
    pub fn flush_with(&mut self, acks: Vec<Ack>) -> Result<(), Closed> {
        self.send_full(acks)?;
        match &mut self.pool {
            Some(pool) => pool.settle(&self.out),
            None => Ok(()),
        }
    }

    /// Sends what is collected, without waiting for lines being decoded.
    fn send_full(&mut self, mut acks: Vec<Ack>) -> Result<(), Closed> {
        // Lines that made no event still move their file's checkpoint: the
        // token is let go at once, after the batches before it.
        acks.extend(self.marks.as_mut().and_then(file::Marks::ack));
        if let Some(pool) = &mut self.pool {
            return pool.submit(acks, &self.out);
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.batch,
            BatchBuf::with_capacity(self.max, self.max * 256),
        );
        self.out.send(Batch::new(full, acks))
    }

    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// For a listening source, which batches per connection instead.
    pub fn into_net(self, name: &str, shutdown: crate::topology::Shutdown) -> net::Net {
        net::Net::new(name, self.out, self.max, shutdown)
    }
}

/// Lines from a byte stream, decoded into a [`Batcher`].
pub struct LineReader {
    pub splitter: LineSplitter,
    decoder: Decoder,
    origin: Arc<str>,
    line_no: u64,
    bytes: u64,
    /// What [`LineReader::count`] already added to the source's counters
    /// (a file source has a reader per file).
    counted: (u64, u64),
    /// The checkpointed stream these lines are, and the offset in it where
    /// the splitter started.
    stream: Option<(u64, u64)>,
}

impl LineReader {
    pub fn new(decoder: Decoder, origin: String) -> Self {
        LineReader {
            splitter: LineSplitter::new(decoder.max_line_bytes),
            decoder,
            origin: origin.into(),
            line_no: 0,
            bytes: 0,
            counted: (0, 0),
            stream: None,
        }
    }

    /// Lines of checkpointed stream `id`, starting at byte `offset` of it.
    pub fn checkpointed(mut self, id: u64, offset: u64) -> Self {
        self.stream = Some((id, offset));
        self
    }

    /// The offset in the stream up to which lines were decoded.
    pub fn offset(&self) -> u64 {
        self.stream.map_or(0, |(_, base)| base) + self.splitter.consumed()
    }

    /// Decodes every complete line buffered, sending full batches.
    pub fn drain(&mut self, out: &mut Batcher) -> Result<(), Closed> {
        let now = timestamp::now_ns();
        while let Some(line) = self.splitter.next_line() {
            self.line_no += 1;
            self.bytes += line.len() as u64 + 1;
            out.push_line(&mut self.decoder, line, &self.origin, self.line_no, now);
            if out.is_full() {
                self.count(out);
                out.send_full(Vec::new())?;
            }
        }
        self.count(out);
        Ok(())
    }

    /// Decodes `bytes` that arrived from elsewhere (a pipe, a generator).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Batcher) -> Result<(), Closed> {
        while !bytes.is_empty() {
            let spare = self.splitter.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.splitter.filled(n);
            bytes = &bytes[n..];
            self.drain(out)?;
        }
        Ok(())
    }

    /// At the real end of input (not a shutdown): decodes a last line
    /// without a newline.
    pub fn finish(&mut self, out: &mut Batcher) -> Result<(), Closed> {
        if let Some(line) = self.splitter.finish() {
            self.line_no += 1;
            self.bytes += line.len() as u64;
            let now = timestamp::now_ns();
            out.push_line(&mut self.decoder, line, &self.origin, self.line_no, now);
        }
        self.count(out);
        out.flush()
    }

    /// Bytes read that are not yet a whole line: left for the next start at
    /// a shutdown, never decoded as an event of their own.
    pub fn unfinished(&self) -> usize {
        self.splitter.buffered()
    }

    /// Adds what was read and failed since the last call to the source's
    /// counters, and marks how far the lines decoded reach.
    fn count(&mut self, out: &mut Batcher) {
        let s = out.stats();
        let (errors, bytes) = (self.decoder.errors, self.bytes);
        s.errors
            .fetch_add(errors - self.counted.0, Ordering::Relaxed);
        s.bytes_in
            .fetch_add(bytes - self.counted.1, Ordering::Relaxed);
        self.counted = (errors, bytes);
        if let (Some((id, _)), Some(marks)) = (self.stream, out.marks.as_mut()) {
            marks.mark(id, self.offset());
        }
    }
}
