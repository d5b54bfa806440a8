//! The `fluent_forward` source: the Fluent forward protocol, so Fluent
//! Bit's and Fluentd's `forward` outputs point at weir unchanged.
//!
//! A client that asks for an ack (`chunk`) gets it once every sink that got
//! the chunk's events has accepted them, not when they were read: a chunk
//! lost on the way is never acked, and the client sends it again.

use super::component::{BuildContext, Job, Source};
use super::net::{self, Conn, Net, Read, Stream};
use super::Batcher;
use crate::codec::forward::{self, Limits, Scan};
use crate::codec::timestamp::now_ns;
use crate::config::FluentForwardSource;
use crate::topology::Ack;
use crate::topology::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Bytes asked of the socket per read.
const READ: usize = 64 << 10;

impl Source for FluentForwardSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        let net = cx.listener(&self.listen(), out, shutdown);
        let cfg = self.clone();
        Some(Box::new(move || run(net, &cfg)))
    }
}

pub fn run(net: Net, cfg: &FluentForwardSource) {
    let runner = net.clone();
    let settings = Arc::new(Settings {
        limits: Limits {
            max_message_bytes: cfg.max_message_bytes,
            max_decompressed_bytes: cfg.max_decompressed_bytes,
            max_decoded_bytes: cfg.max_decoded_bytes,
        },
        tag_field: cfg.tag_field.clone(),
    });
    runner.block_on(async move {
        let Some(listener) = net::bind(&net, &cfg.address).await else {
            return;
        };
        let each = net.clone();
        net::serve_tcp(&net, listener, move |stream, peer| {
            connection(each.clone(), stream, peer, settings.clone())
        })
        .await
    });
}

struct Settings {
    limits: Limits,
    tag_field: String,
}

async fn connection(net: Net, stream: Stream, peer: SocketAddr, settings: Arc<Settings>) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Acks are written by a task of their own: they are due whenever the
    // sinks accept, while this task may be waiting for the next message.
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel::<Vec<String>>();
    let acker = tokio::spawn(async move {
        while let Some(chunks) = acks_rx.recv().await {
            for chunk in chunks {
                if writer.write_all(&forward::ack(&chunk)).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut buf: Vec<u8> = vec![0; READ];
    let mut filled = 0;
    let mut pending = net.batch();
    let mut chunks: Vec<String> = Vec::new();
    let mut conn = Conn::new(&net, peer);
    let mut scan = Scan::default();
    // The read buffer and the events not yet sent, out of the source's
    // budget: many half-sent messages together cannot exhaust memory.
    let mut held = net.limits.buffered.hold();
    'conn: loop {
        if buf.len() - filled < READ {
            if !held.set(filled + READ + pending.batch.byte_len()) {
                net.over_budget(peer, "part of a forward message; closing");
                break;
            }
            buf.resize(filled + READ, 0);
        }
        let partial = filled > 0;
        match conn.read(&mut reader, &mut buf[filled..], partial).await {
            Read::Data(n) => filled += n,
            Read::Eof if filled > 0 => {
                net.bad_input("truncated", peer, "connection closed inside a message");
                break;
            }
            Read::Eof | Read::End => break,
        }
        let mut at = 0;
        loop {
            let now = now_ns();
            let decoded = forward::decode_from(
                &mut scan,
                &buf[at..filled],
                &settings.limits,
                &settings.tag_field,
                now,
                &mut pending.batch,
            );
            match decoded {
                Ok(Some(m)) => {
                    at += m.consumed;
                    conn.message_done();
                    if m.errors > 0 {
                        let what =
                            format!("{} records were not maps (kept with `_error`)", m.errors);
                        net.bad_input("bad_record", peer, &what);
                    }
                    chunks.extend(m.chunk);
                    if pending.is_full() && send(&mut pending, &mut chunks, &acks_tx).await.is_err()
                    {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be resynchronised: what came before
                    // is kept, the connection is closed.
                    net.bad_input("protocol_error", peer, &format!("{e}; closing"));
                    let _ = send(&mut pending, &mut chunks, &acks_tx).await;
                    break 'conn;
                }
            }
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if buf.len() > READ * 2 && filled < READ {
            buf.truncate(READ);
            buf.shrink_to(READ);
        }
        // Decoded events wait for the pipeline out of the budget too.
        if !held.set(buf.len() + pending.batch.byte_len()) {
            net.over_budget(peer, "events of a forward message; closing");
            break;
        }
        if send(&mut pending, &mut chunks, &acks_tx).await.is_err() {
            break;
        }
    }
    let _ = send(&mut pending, &mut chunks, &acks_tx).await;
    drop(acks_tx);
    // Acks still due go out while the client waits for them.
    let _ = tokio::time::timeout(Duration::from_secs(30), acker).await;
}

/// Sends the batch; its chunks are acked when the batch is through.
async fn send(
    pending: &mut net::Pending,
    chunks: &mut Vec<String>,
    acks: &mpsc::UnboundedSender<Vec<String>>,
) -> Result<(), crate::topology::Closed> {
    let tokens = match chunks.is_empty() {
        true => Vec::new(),
        false => {
            let (due, tx) = (std::mem::take(chunks), acks.clone());
            vec![Ack::new(Box::new(move |ok| {
                if ok {
                    let _ = tx.send(due);
                }
            }))]
        }
    };
    if pending.batch.is_empty() {
        // A chunk of nothing but bad records is still the client's to retry
        // or not; it was read, so it is acked.
        drop(tokens);
        return Ok(());
    }
    pending.flush(tokens).await
}
