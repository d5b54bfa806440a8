//! What the listening sources share: a runtime on the source's own thread,
//! a TCP listener that bounds its connections, reads that give up on a peer
//! sitting on half a frame, and batches sent per read.
//!
//! A connection decodes into a batch of its own and sends it after every
//! read (or when full): a busy peer fills batches, a quiet one is not held
//! back waiting for company. Sending waits when the pipeline is full, so
//! the peer's TCP window closes and backpressure reaches the agent.

use crate::topology::{Ack, Closed, Output, Shutdown, Stats};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use weir_layout::BatchBuf;

/// How long a stopping source gives its connections to finish.
const GRACE: Duration = Duration::from_secs(5);

/// What a listening source's tasks need.
#[derive(Clone)]
pub struct Net {
    pub name: Arc<str>,
    pub out: Output,
    pub batch_size: usize,
    pub shutdown: Shutdown,
    /// Turns true once `shutdown` is seen: one watcher polls the flag, and
    /// every connection waits on this instead of polling too.
    stopping: (
        Arc<tokio::sync::watch::Sender<bool>>,
        tokio::sync::watch::Receiver<bool>,
    ),
}

impl Net {
    pub fn new(name: &str, out: Output, batch_size: usize, shutdown: Shutdown) -> Net {
        let (tx, rx) = tokio::sync::watch::channel(false);
        Net {
            name: name.into(),
            out,
            batch_size,
            shutdown,
            stopping: (Arc::new(tx), rx),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Counts bad input: an error, by reason, and a warning that says where
    /// (the first few of each reason, then every power of two).
    pub fn bad_input(&self, reason: &'static str, peer: impl std::fmt::Display, what: &str) {
        Stats::add(&self.stats().errors, 1);
        self.stats().count_reason(reason, 1);
        let n = self.stats().reasons().get(reason).copied().unwrap_or(1);
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!(source = %self.name, %peer, "{what} ({reason}, {n} so far)");
        }
    }

    /// A batch for one connection or request: small until it is used, so
    /// idle connections cost little.
    pub fn batch(&self) -> Pending {
        Pending {
            batch: BatchBuf::with_capacity(16, 4 << 10),
            net: self.clone(),
        }
    }

    /// Sends events that arrived together (a request, a round of scrapes)
    /// in batches of at most `batch_size`.
    pub async fn send(&self, mut batch: BatchBuf) -> Result<(), Closed> {
        while batch.len() > self.batch_size {
            let rest = batch.split_off(self.batch_size);
            self.out
                .send_async(std::mem::replace(&mut batch, rest))
                .await?;
        }
        self.out.send_async(batch).await
    }

    /// Resolves once the source is told to stop.
    pub async fn stopped(&self) {
        let mut rx = self.stopping.1.clone();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Runs the source on a single-threaded runtime on this thread, with
    /// the one task that watches for shutdown.
    pub fn block_on(&self, fut: impl Future<Output = ()>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return tracing::error!(source = %self.name, "no runtime: {e}"),
        };
        let (tx, shutdown) = (self.stopping.0.clone(), self.shutdown.clone());
        rt.spawn(async move {
            while !shutdown.is_triggered() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = tx.send(true);
        });
        rt.block_on(fut)
    }
}

/// Events decoded on one connection, not yet sent.
pub struct Pending {
    pub batch: BatchBuf,
    net: Net,
}

impl Pending {
    pub fn is_full(&self) -> bool {
        self.batch.len() >= self.net.batch_size
    }

    /// Sends what is collected, with the tokens that report its fate.
    pub async fn flush(&mut self, acks: Vec<Ack>) -> Result<(), Closed> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // The next one is sized like this one: a busy peer keeps its size.
        let cap = self.batch.len().min(self.net.batch_size);
        let next = BatchBuf::with_capacity(cap, self.batch.byte_len());
        let full = std::mem::replace(&mut self.batch, next);
        self.net
            .out
            .send_async(crate::topology::Batch::new(full, acks))
            .await
    }
}

/// Binds `address`; a source that cannot listen stops the pipeline, as a
/// sink that cannot write does. A port still held by the source this one
/// replaces (a reload) is tried again for a few seconds.
pub async fn bind(net: &Net, address: &str) -> Option<TcpListener> {
    let result = retry_in_use(|| TcpListener::bind(address)).await;
    listening(net, "tcp", address, result)
}

/// [`bind`] for UDP.
pub async fn bind_udp(net: &Net, address: &str) -> Option<tokio::net::UdpSocket> {
    let result = retry_in_use(|| tokio::net::UdpSocket::bind(address)).await;
    listening(net, "udp", address, result)
}

async fn retry_in_use<T, F: Future<Output = std::io::Result<T>>>(
    bind: impl Fn() -> F,
) -> std::io::Result<T> {
    let mut tries = 0;
    loop {
        match bind().await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

fn listening<T>(net: &Net, what: &str, address: &str, result: std::io::Result<T>) -> Option<T> {
    match result {
        Ok(l) => {
            tracing::info!(source = %net.name, "listening on {what} {address}");
            Some(l)
        }
        Err(e) => {
            tracing::error!(source = %net.name, "cannot listen on {what} {address}: {e}; stopping the pipeline");
            net.shutdown.trigger();
            None
        }
    }
}

/// Accepts connections until shutdown and runs `handle` on each, at most
/// `max_connections` at once; then gives them [`GRACE`] to finish.
pub async fn serve_tcp<F, Fut>(net: &Net, listener: TcpListener, max_connections: usize, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = net.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = stream.set_nodelay(true);
                        let conn = handle(stream, peer);
                        tasks.spawn(async move {
                            conn.await;
                            drop(permit);
                        });
                    }
                    Err(_) => net.bad_input(
                        "connection_limit",
                        peer,
                        &format!("{max_connections} connections open; closing this one"),
                    ),
                },
                // Out of file descriptors and the like: wait, do not spin.
                Err(e) => {
                    tracing::warn!(source = %net.name, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
}

/// What a read on a connection came to.
pub enum Read {
    Data(usize),
    /// The peer closed its side.
    Eof,
    /// Stop reading: the source is stopping, the peer sat on part of a
    /// frame for the read timeout (counted as `slow_client`), or the read
    /// failed (logged).
    End,
}

/// Reads into `buf`; `partial` says a frame is half in, so a silent peer
/// is given up on after `timeout` (an idle peer between frames is not).
pub async fn read(
    net: &Net,
    peer: SocketAddr,
    stream: &mut (impl AsyncReadExt + Unpin),
    buf: &mut [u8],
    partial: bool,
    timeout: Duration,
) -> Read {
    let wait = async {
        if partial {
            tokio::time::sleep(timeout).await
        } else {
            std::future::pending().await
        }
    };
    tokio::select! {
        r = stream.read(buf) => match r {
            Ok(0) => Read::Eof,
            Ok(n) => {
                Stats::add(&net.stats().bytes_in, n);
                Read::Data(n)
            }
            Err(e) => {
                tracing::debug!(source = %net.name, %peer, "read: {e}");
                Read::End
            }
        },
        () = net.stopped() => Read::End,
        () = wait => {
            net.bad_input("slow_client", peer, "half a message and then silence; closing");
            Read::End
        }
    }
}

/// An error with its causes: reqwest's own message is often only "error
/// sending request".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
