//! Splitting a byte stream into lines, with a cap on line length.
//!
//! Reads land in one reusable buffer and lines are handed out as slices of
//! it: no copy and no allocation per line. A line longer than the cap is
//! handed out once, truncated, with its full length, and the rest of it is
//! skipped without being buffered, so memory stays bounded whatever the input.

/// One line, without its `\n` (or `\r\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Full(&'a [u8]),
    /// The first `max` bytes of a longer line; it was at least `len` bytes.
    Truncated {
        head: &'a [u8],
        len: usize,
    },
}

impl Line<'_> {
    /// The line's length as read, without its newline.
    pub fn len(&self) -> usize {
        match *self {
            Line::Full(b) => b.len(),
            Line::Truncated { len, .. } => len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct LineSplitter {
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes of the stream moved out of the buffer's front so far: with
    /// `start`, how far into the stream the lines handed out reach.
    base: u64,
    max: usize,
    /// Bytes of an over-long line seen so far, while skipping its tail.
    skipping: Option<usize>,
}

const READ_CHUNK: usize = 256 * 1024;

/// A new splitter's buffer: it grows to `READ_CHUNK` (or the longest line)
/// as reads fill it, so a source following a thousand quiet files does not
/// hold a full read buffer for each.
const FIRST_CHUNK: usize = 16 * 1024;

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            buf: vec![0; FIRST_CHUNK.min(READ_CHUNK.max(max_line_bytes + 1))],
            start: 0,
            end: 0,
            base: 0,
            max: max_line_bytes,
            skipping: None,
        }
    }

    /// Space to read into; call [`LineSplitter::filled`] with the count read.
    pub fn spare(&mut self) -> &mut [u8] {
        let low = self.buf.len() - self.end < self.buf.len() / 4;
        if self.start > 0 && (self.start == self.end || low) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.base += self.start as u64;
            self.start = 0;
        }
        let cap = READ_CHUNK.max(self.max + 1);
        if self.buf.len() - self.end < self.buf.len() / 4 && self.buf.len() < cap {
            self.buf.resize((self.buf.len() * 4).min(cap), 0);
        }
        &mut self.buf[self.end..]
    }

    /// Bytes of the stream that the lines handed out so far (with their
    /// newlines, and the skipped tails of over-long lines) took up: where a
    /// reader resumes so that no line is read twice or cut.
    pub fn consumed(&self) -> u64 {
        self.base + self.start as u64
    }

    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The next complete line, if one is buffered.
    pub fn next_line(&mut self) -> Option<Line<'_>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            let s = self.start;
            match memchr::memchr(b'\n', avail) {
                Some(i) => {
                    self.start += i + 1;
                    if self.skipping.take().is_some() {
                        continue; // the tail of a line already reported as truncated
                    }
                    if i > self.max {
                        return Some(Line::Truncated {
                            head: &self.buf[s..s + self.max],
                            len: i,
                        });
                    }
                    return Some(Line::Full(trim_cr(&self.buf[s..s + i])));
                }
                None => {
                    if let Some(seen) = self.skipping.as_mut() {
                        *seen += avail.len();
                        self.start = self.end;
                        return None;
                    }
                    if avail.len() > self.max {
                        // Over-long and unterminated: hand out the head now,
                        // then skip to the next newline without buffering.
                        self.skipping = Some(avail.len());
                        self.start = self.end;
                        return Some(Line::Truncated {
                            head: &self.buf[s..s + self.max],
                            len: avail.len(),
                        });
                    }
                    return None;
                }
            }
        }
    }

    /// Bytes held that are not a complete line yet.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// At end of input: the last line if it had no trailing newline.
    pub fn finish(&mut self) -> Option<Line<'_>> {
        if self.skipping.take().is_some() || self.start == self.end {
            self.start = self.end;
            return None;
        }
        let line = &self.buf[self.start..self.end];
        self.start = self.end;
        Some(Line::Full(trim_cr(line)))
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads `input` to its end and calls `f` with each line and its number
/// (from 1), for commands that read a whole stream (`weir sql`, `weir plugin
/// run`). Sources use [`LineSplitter`] directly, as their input arrives.
pub fn for_each_line<E: From<std::io::Error>>(
    mut input: impl std::io::Read,
    max_line_bytes: usize,
    mut f: impl FnMut(Line<'_>, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut lines = LineSplitter::new(max_line_bytes);
    let mut line_no = 0;
    loop {
        let n = match input.read(lines.spare()) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        lines.filled(n);
        while let Some(line) = lines.next_line() {
            line_no += 1;
            f(line, line_no)?;
        }
        if n == 0 {
            if let Some(line) = lines.finish() {
                f(line, line_no + 1)?;
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], max: usize, chunk: usize) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut push = |l: Line<'_>| match l {
            Line::Full(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            Line::Truncated { head, len } => {
                out.push(format!("T{len}:{}", String::from_utf8_lossy(head)))
            }
        };
        for part in input.chunks(chunk) {
            s.spare()[..part.len()].copy_from_slice(part);
            s.filled(part.len());
            while let Some(l) = s.next_line() {
                push(l);
            }
        }
        if let Some(l) = s.finish() {
            push(l);
        }
        out
    }

    #[test]
    fn lines_across_chunk_boundaries() {
        for chunk in [1, 2, 3, 7, 100] {
            assert_eq!(
                split(b"a\r\nbb\n\nccc", 10, chunk),
                ["a", "bb", "", "ccc"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn consumed_counts_whole_lines_only() {
        let mut s = LineSplitter::new(1 << 20);
        let feed = |s: &mut LineSplitter, b: &[u8]| {
            s.spare()[..b.len()].copy_from_slice(b);
            s.filled(b.len());
        };
        feed(&mut s, b"one\r\ntw");
        assert!(s.next_line().is_some());
        assert!(s.next_line().is_none());
        assert_eq!(s.consumed(), 5, "`tw` is not a line yet");
        // Enough to make the buffer compact and grow: `consumed` goes on.
        for _ in 0..40_000 {
            feed(&mut s, b"o\nxx");
            while s.next_line().is_some() {}
        }
        let total = 5 + 2 + 40_000 * 4;
        assert_eq!(s.consumed(), total - 2, "all but the unfinished `xx`");
    }

    #[test]
    fn over_long_lines_are_truncated_once_and_skipped() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 50));
        input.extend(b"\nafter\n");
        for chunk in [1, 4, 13, 1000] {
            let got = split(&input, 8, chunk);
            assert_eq!(got[0], "ok", "chunk {chunk}");
            assert!(
                got[1].starts_with('T') && got[1].ends_with(":xxxxxxxx"),
                "chunk {chunk}: {got:?}"
            );
            assert_eq!(&got[2..], ["after"], "chunk {chunk}");
        }
    }
}
