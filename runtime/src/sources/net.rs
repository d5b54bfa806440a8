//! What the listening sources share: a runtime on the source's own thread,
//! a TCP listener that bounds its connections (in all and per address),
//! reads that give up on a message not whole within `read_timeout` or a
//! connection idle for `idle_timeout`, one byte budget for what all its
//! connections hold, and batches sent per read.
//!
//! A connection decodes into a batch of its own and sends it after every
//! read (or when full): a busy peer fills batches, a quiet one is not held
//! back waiting for company. Sending waits when the pipeline is full, so
//! the peer's TCP window closes and backpressure reaches the agent.

use crate::topology::{Ack, Batch, Closed, Output, Shutdown, Stats};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use weir_layout::BatchBuf;

/// How long a stopping source gives its connections to finish.
const GRACE: Duration = Duration::from_secs(5);

/// What every listening source bounds, from its settings
/// ([`crate::config::ListenSettings`]).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// A message that has begun must be whole within this.
    pub read_timeout: Duration,
    /// A connection with no message under way is closed after this long
    /// without a byte.
    pub idle_timeout: Duration,
    /// What all connections hold at once.
    pub buffered: Arc<Budget>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_peer: 64,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            buffered: Budget::new(256 << 20),
        }
    }
}

/// Bytes shared by all connections of a source: a partial message, a body
/// being read or events waiting for the pipeline each hold some while they
/// exist, so many slow clients together cannot hold more than `max`.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            used: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Holds nothing yet; [`Held::set`] grows it.
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// Part of a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Held {
    /// Holds `bytes` from now on; `false`, holding what it held, when the
    /// budget has not that much left.
    pub fn set(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            self.budget
                .used
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
            self.bytes = bytes;
            return true;
        }
        let more = bytes - self.bytes;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(more).filter(|&u| u <= self.budget.max)
            });
        if taken.is_ok() {
            self.bytes = bytes;
        }
        taken.is_ok()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// What a listening source's tasks need.
#[derive(Clone)]
pub struct Net {
    pub name: Arc<str>,
    pub out: Output,
    pub batch_size: usize,
    pub shutdown: Shutdown,
    pub limits: Limits,
    /// Serves TLS when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
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
            limits: Limits::default(),
            tls: None,
            stopping: (Arc::new(tx), rx),
        }
    }

    pub fn with_limits(mut self, limits: Limits, tls: Option<tokio_rustls::TlsAcceptor>) -> Net {
        self.limits = limits;
        self.tls = tls;
        self
    }

    /// Says (once per power of two) that the source's byte budget is spent.
    pub fn over_budget(&self, peer: impl std::fmt::Display, what: &str) {
        let max = self.limits.buffered.max();
        let what =
            format!("{what}: max_buffered_bytes ({max}) is held by this source's connections");
        self.bad_input("buffer_full", peer, &what);
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
    /// in batches of at most `batch_size`, each event copied once.
    pub async fn send(&self, batch: BatchBuf) -> Result<(), Closed> {
        self.send_acked(batch, Vec::new()).await
    }

    /// [`Net::send`], each batch holding `acks`: a large message (a forward
    /// chunk of 100,000 entries) is acknowledged once all of it is through.
    pub async fn send_acked(&self, batch: BatchBuf, acks: Vec<Ack>) -> Result<(), Closed> {
        if batch.len() <= self.batch_size {
            return self.out.send_async(Batch::new(batch, acks)).await;
        }
        for chunk in batch.chunks(self.batch_size) {
            self.out.send_async(Batch::new(chunk, acks.clone())).await?;
        }
        Ok(())
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
        self.net.send_acked(full, acks).await
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
/// `max_connections` at once and `max_connections_per_peer` from one
/// address; then gives them [`GRACE`] to finish.
///
/// With TLS, the handshake runs in the connection's own task and must be
/// done within `read_timeout`, like any message.
pub async fn serve_tcp<F, Fut>(net: &Net, listener: TcpListener, handle: F)
where
    F: Fn(Stream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let (max, per_peer) = (
        net.limits.max_connections.max(1),
        net.limits.max_connections_per_peer.max(1),
    );
    let limit = Arc::new(tokio::sync::Semaphore::new(max));
    let peers = Arc::new(Mutex::new(HashMap::<IpAddr, usize>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = net.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = PeerSlot::take(&peers, peer.ip(), per_peer) else {
                        let what = format!("{per_peer} connections open from this address (max_connections_per_peer); closing this one");
                        net.bad_input("peer_connection_limit", peer, &what);
                        continue;
                    };
                    match limit.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let _ = stream.set_nodelay(true);
                            let (net, handle) = (net.clone(), handle.clone());
                            tasks.spawn(async move {
                                if let Some(stream) = net.handshake(stream, peer).await {
                                    handle(stream, peer).await;
                                }
                                drop((permit, slot));
                            });
                        }
                        Err(_) => net.bad_input(
                            "connection_limit",
                            peer,
                            &format!("{max} connections open (max_connections); closing this one"),
                        ),
                    }
                }
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

/// A connection's byte stream: TCP, or TLS over it.
pub type Stream = Box<dyn AsyncStream>;

pub trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

impl Net {
    /// The connection as the source reads it: TLS accepted first when the
    /// source has `tls`; `None` (counted as `tls`) when that fails.
    async fn handshake(&self, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
        let Some(acceptor) = &self.tls else {
            return Some(Box::new(tcp));
        };
        let timeout = self.limits.read_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                self.bad_input("tls", peer, &format!("TLS handshake failed: {e}"));
                None
            }
            Err(_) => {
                let what = format!("TLS handshake not done within read_timeout ({timeout:?})");
                self.bad_input("slow_client", peer, &what);
                None
            }
        }
    }
}

/// One of the connections one address has open; counted down when dropped.
struct PeerSlot {
    peers: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerSlot {
    fn take(peers: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = peers.lock().unwrap_or_else(|e| e.into_inner());
        let open = map.entry(ip).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(PeerSlot {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
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

/// A connection's clock: when the message under way began, and when a
/// byte last came. Trickling a byte at a time does not reset the first, so
/// a message must be whole within `read_timeout` however it is sent.
pub struct Conn {
    net: Net,
    pub peer: SocketAddr,
    message_since: Option<Instant>,
    last_byte: Instant,
}

impl Conn {
    pub fn new(net: &Net, peer: SocketAddr) -> Conn {
        Conn {
            net: net.clone(),
            peer,
            message_since: None,
            last_byte: Instant::now(),
        }
    }

    /// A message was whole: the next one has a `read_timeout` of its own.
    pub fn message_done(&mut self) {
        self.message_since = None;
    }

    /// Reads into `buf`; `partial` says a message is under way (part of it
    /// is buffered), else the connection is between messages.
    pub async fn read(
        &mut self,
        stream: &mut (impl AsyncReadExt + Unpin),
        buf: &mut [u8],
        partial: bool,
    ) -> Read {
        let limits = &self.net.limits;
        let now = Instant::now();
        let (deadline, idle) = if partial {
            let since = *self.message_since.get_or_insert(now);
            (since + limits.read_timeout, false)
        } else {
            self.message_since = None;
            (self.last_byte + limits.idle_timeout, true)
        };
        let net = &self.net;
        tokio::select! {
            r = stream.read(buf) => match r {
                Ok(0) => Read::Eof,
                Ok(n) => {
                    self.last_byte = Instant::now();
                    Stats::add(&net.stats().bytes_in, n);
                    Read::Data(n)
                }
                Err(e) => {
                    tracing::debug!(source = %net.name, peer = %self.peer, "read: {e}");
                    Read::End
                }
            },
            () = net.stopped() => Read::End,
            () = tokio::time::sleep_until(deadline.into()) => {
                if idle {
                    tracing::debug!(source = %net.name, peer = %self.peer, "idle for {:?} (idle_timeout); closing", limits.idle_timeout);
                } else {
                    let what = format!("a message begun {:?} ago is not whole (read_timeout); closing", limits.read_timeout);
                    net.bad_input("slow_client", self.peer, &what);
                }
                Read::End
            }
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
