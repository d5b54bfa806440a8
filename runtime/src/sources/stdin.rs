//! The `stdin` source: lines from standard input until it closes.

use super::component::{BuildContext, Job, Source};
use super::{Batcher, LineReader};
use crate::codec::Decoder;
use crate::config::StdinSource;
use crate::topology::Shutdown;
use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

impl Source for StdinSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        cx.check_lines_format(self.format);
        let (name, cfg, flush_after) = (cx.name.to_string(), self.clone(), cx.flush_after());
        Some(Box::new(move || {
            run(&name, &cfg, out, flush_after, shutdown)
        }))
    }
}

pub fn run(
    name: &str,
    cfg: &StdinSource,
    mut out: Batcher,
    flush_after: Duration,
    shutdown: Shutdown,
) {
    let decoder = Decoder::new(cfg.format, &cfg.timestamp_field, cfg.max_line_bytes);
    out.start_decoders(name, &decoder);
    let mut reader = LineReader::new(decoder, "stdin".into());
    // A blocked read cannot be interrupted, so reading happens on a helper
    // thread; this loop can then notice shutdown and end the source.
    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut chunk = vec![0; 64 * 1024];
                match stdin.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        if tx.send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        })
        .expect("spawn stdin reader");
    loop {
        if shutdown.is_triggered() {
            // What was read from the pipe is sent, as far as it is whole
            // lines; a line cut by the shutdown is not made an event.
            for chunk in rx.try_iter().map_while(Result::ok) {
                if reader.feed(&chunk, &mut out).is_err() {
                    return;
                }
            }
            let _ = out.flush();
            if reader.unfinished() > 0 {
                tracing::warn!(
                    source = name,
                    "stopped in the middle of a line: its first {} bytes were not sent",
                    reader.unfinished()
                );
            }
            return;
        }
        match rx.recv_timeout(flush_after) {
            Ok(Ok(chunk)) => {
                if reader.feed(&chunk, &mut out).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                tracing::error!(source = name, "cannot read stdin: {e}");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if out.flush().is_err() {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Standard input closed: a last line without a newline is whole.
    let _ = reader.finish(&mut out);
}
