//! The `kafka` source: a member of a consumer group, committing an offset
//! only once every sink that got its record has accepted it.
//!
//! Offsets are stored (and auto-committed by librdkafka every second) as
//! batches are acknowledged, in order per partition: a record is committed
//! only when it and every record before it in its partition are through.
//! When partitions are revoked, the batch in the making is sent, the source
//! waits for what is in flight from them, commits, and lets them go, so the
//! member that takes them over starts where this one stopped.

use super::component::{BuildContext, Job, Source};
use super::Batcher;
use crate::codec::Decoder;
use crate::config::KafkaSource;
use crate::topology::{Ack, Shutdown, Stats};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use weir_layout::{Encoder, LayoutError};

/// How long a shutdown waits for in-flight records to be accepted before
/// letting go (what is left is consumed again after a restart).
const DRAIN: Duration = Duration::from_secs(30);

/// The same for a revoke, shorter: the whole group waits for it, and
/// records held by an open window would hold it until the window closes.
const RELEASE: Duration = Duration::from_secs(10);

/// Settings weir owns: at-least-once depends on them.
pub const RESERVED: &[&str] = &["enable.auto.offset.store", "group.id", "bootstrap.servers"];

/// What a Kafka source shows in `/metrics` and `/components`.
#[derive(Debug, Default)]
pub struct KafkaState {
    /// 1 when a broker connection is up, per librdkafka's statistics.
    pub connected: AtomicBool,
    /// Records behind the partitions' high watermarks, summed.
    pub lag: AtomicI64,
    pub partitions: AtomicU64,
}

type TopicPartition = (Arc<str>, i32);

impl Source for KafkaSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        for key in self.librdkafka_options.keys() {
            if RESERVED.contains(&key.as_str()) {
                cx.problem(
                    "librdkafka_options",
                    format!("`{key}` is set by weir (use `brokers` and `group_id`; offsets are stored as sinks accept events)"),
                );
            }
        }
        let (name, cfg, flush_after) = (cx.name.to_string(), self.clone(), cx.flush_after());
        Some(Box::new(move || {
            run(&name, &cfg, out, flush_after, shutdown)
        }))
    }
}

pub fn run(name: &str, cfg: &KafkaSource, out: Batcher, flush_after: Duration, shutdown: Shutdown) {
    let state = Arc::new(KafkaState::default());
    let stats = out.out.stats.clone();
    let _ = stats.kafka.set(state.clone());
    let shared = Arc::new(Shared {
        name: name.to_string(),
        stats,
        making: Mutex::new(Making {
            out: Some(out),
            ranges: Vec::new(),
            started: None,
        }),
        tracker: Arc::new(Mutex::new(Tracker::default())),
        state,
        down_logged: AtomicBool::new(false),
    });
    let consumer: BaseConsumer<Context> =
        match client_config(cfg).create_with_context(Context(shared.clone())) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(source = name, "cannot create the Kafka consumer: {e}");
                shutdown.trigger();
                return;
            }
        };
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&topics) {
        tracing::error!(source = name, "cannot subscribe to {topics:?}: {e}");
        shutdown.trigger();
        return;
    }
    tracing::info!(source = name, brokers = %cfg.brokers, group = %cfg.group_id, "consuming {topics:?}");

    let decoder = Decoder::new(cfg.format, &cfg.timestamp_field, cfg.max_line_bytes);
    let mut reader = Reader {
        decoder,
        meta: cfg.metadata_field.clone(),
        topics: HashMap::new(),
        bytes: 0,
    };
    while !shutdown.is_triggered() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let mut making = shared.making();
                if reader.read(&m, &mut making).is_err() {
                    break;
                }
                if making.due(flush_after) && shared.flush(&mut making).is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(source = name, "consume error: {e}");
                shared.stats.count_reason("kafka_error", 1);
            }
            None => {
                if shared.flush(&mut shared.making()).is_err() {
                    break;
                }
            }
        }
        store(&consumer, &shared.tracker);
    }
    // Send what is made, close the output so everything downstream drains,
    // then commit what was accepted.
    {
        let mut making = shared.making();
        let _ = shared.flush(&mut making);
        making.out = None;
    }
    let deadline = Instant::now() + DRAIN;
    while lock(&shared.tracker).in_flight() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        store(&consumer, &shared.tracker);
    }
    store(&consumer, &shared.tracker);
    let left = lock(&shared.tracker).in_flight();
    if left > 0 {
        tracing::warn!(
            source = name,
            "{left} batches were not accepted in {DRAIN:?}; they will be consumed again"
        );
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing consumed since the last commit, or the group is gone.
        tracing::debug!(source = name, "final commit: {e}");
    }
    tracing::debug!(source = name, "kafka source done");
}

fn client_config(cfg: &KafkaSource) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", cfg.start_from.as_str())
        // What librdkafka prefetches is bounded; a slow pipeline stops
        // fetching rather than growing memory. Once under the bound again,
        // fetching resumes at once (librdkafka waits a second by default,
        // which leaves a busy pipeline idle for most of it).
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        .set("statistics.interval.ms", "1000")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &cfg.librdkafka_options {
        c.set(k, v);
    }
    c
}

/// Stores the offsets that became committable since the last call.
fn store(consumer: &BaseConsumer<Context>, tracker: &Mutex<Tracker>) {
    let ready = lock(tracker).take_ready();
    if ready.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(ready.len());
    for ((topic, partition), next) in &ready {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // A partition revoked meanwhile: its new owner resumes from the
        // last commit.
        tracing::debug!("storing offsets: {e}");
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the consume loop and the rebalance callback share.
struct Shared {
    name: String,
    stats: Arc<Stats>,
    making: Mutex<Making>,
    tracker: Arc<Mutex<Tracker>>,
    state: Arc<KafkaState>,
    down_logged: AtomicBool,
}

/// The batch being filled, and which records it holds.
struct Making {
    /// `None` once the source is closing.
    out: Option<Batcher>,
    /// Per partition: the first and last offset in this batch.
    ranges: Vec<(TopicPartition, i64, i64)>,
    started: Option<Instant>,
}

impl Making {
    fn due(&self, flush_after: Duration) -> bool {
        self.out.as_ref().is_some_and(Batcher::is_full)
            || self.started.is_some_and(|s| s.elapsed() >= flush_after)
    }
}

impl Shared {
    fn making(&self) -> MutexGuard<'_, Making> {
        lock(&self.making)
    }

    /// Sends the batch with a token that, once every holder lets go, marks
    /// its records done in the tracker.
    fn flush(&self, making: &mut Making) -> Result<(), crate::topology::Closed> {
        let Some(out) = making.out.as_mut() else {
            return Ok(());
        };
        making.started = None;
        if making.ranges.is_empty() {
            return out.flush();
        }
        let ranges = std::mem::take(&mut making.ranges);
        let id = lock(&self.tracker).add(&ranges);
        let tracker = Arc::downgrade(&self.tracker);
        let parts: Vec<TopicPartition> = ranges.into_iter().map(|(tp, _, _)| tp).collect();
        let ack = Ack::new(Box::new(move |ok| {
            if let Some(t) = tracker.upgrade() {
                lock(&t).done(id, &parts, ok);
            }
        }));
        out.flush_with(vec![ack])
    }

    /// Partitions are being taken away: sends their records on, waits for
    /// them to be accepted, and commits.
    fn release(&self, consumer: &BaseConsumer<Context>, revoked: &TopicPartitionList) {
        let parts: Vec<(String, i32)> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let _ = self.flush(&mut self.making());
        let deadline = Instant::now() + RELEASE;
        while lock(&self.tracker).in_flight_of(&parts) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let ready = lock(&self.tracker).forget(&parts);
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &ready {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if tpl.count() > 0 {
            // Stored too: librdkafka commits the stored offsets itself as
            // it unassigns, and an older one would undo this commit.
            if let Err(e) = consumer.store_offsets(&tpl) {
                tracing::debug!(source = %self.name, "storing offsets on revoke: {e}");
            }
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(source = %self.name, "commit on revoke: {e}");
            }
        }
        let at: Vec<String> = ready
            .iter()
            .map(|((t, p), next)| format!("{t}/{p}@{next}"))
            .collect();
        tracing::info!(source = %self.name, "released {} partitions, committed at {}", parts.len(), at.join(" "));
    }
}

/// Turns records into events.
struct Reader {
    decoder: Decoder,
    meta: String,
    /// Topic names, interned so a record costs no allocation.
    topics: HashMap<String, Arc<str>>,
    bytes: u64,
}

impl Reader {
    fn read(
        &mut self,
        m: &BorrowedMessage<'_>,
        making: &mut Making,
    ) -> Result<(), crate::topology::Closed> {
        let Some(out) = making.out.as_mut() else {
            return Err(crate::topology::Closed);
        };
        let payload = m.payload().unwrap_or_default();
        self.bytes += payload.len() as u64;
        // Event time: the record's own field, else Kafka's timestamp.
        let at = m
            .timestamp()
            .to_millis()
            .map_or_else(crate::codec::timestamp::now_ns, |ms| {
                ms.saturating_mul(1_000_000)
            });
        let meta = self.meta.as_str();
        let extra = |enc: &mut Encoder<'_>| -> Result<u32, LayoutError> {
            if meta.is_empty() {
                return Ok(0);
            }
            write_metadata(enc, meta, m)?;
            Ok(1)
        };
        let whence = Whence(m.topic(), m.partition(), m.offset());
        self.decoder
            .decode_record(&mut out.batch, payload, &whence, at, &extra);
        let s = out.stats();
        s.errors.store(self.decoder.errors, Ordering::Relaxed);
        s.bytes_in.store(self.bytes, Ordering::Relaxed);

        let topic = match self.topics.get(m.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = m.topic().into();
                self.topics.insert(m.topic().to_string(), t.clone());
                t
            }
        };
        let (partition, offset) = (m.partition(), m.offset());
        match making
            .ranges
            .iter_mut()
            .find(|((t, p), _, _)| *p == partition && **t == *topic)
        {
            Some((_, _, last)) => *last = offset,
            None => making.ranges.push(((topic, partition), offset, offset)),
        }
        making.started.get_or_insert_with(Instant::now);
        Ok(())
    }
}

/// `topic/partition@offset`, for error messages.
struct Whence<'a>(&'a str, i32, i64);

impl std::fmt::Display for Whence<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.0, self.1, self.2)
    }
}

/// `{topic, partition, offset, timestamp_ms, key, headers}` under `field`.
fn write_metadata(
    enc: &mut Encoder<'_>,
    field: &str,
    m: &BorrowedMessage<'_>,
) -> Result<(), LayoutError> {
    enc.key(field)?;
    let obj = enc.begin(true);
    let mut n = 3;
    enc.key("topic")?;
    enc.str(m.topic())?;
    enc.key("partition")?;
    enc.int(i64::from(m.partition()));
    enc.key("offset")?;
    enc.int(m.offset());
    if let Some(ms) = m.timestamp().to_millis() {
        enc.key("timestamp_ms")?;
        enc.int(ms);
        n += 1;
    }
    if let Some(key) = m.key() {
        enc.key("key")?;
        text_or_bytes(enc, key)?;
        n += 1;
    }
    if let Some(headers) = m.headers() {
        enc.key("headers")?;
        let h = enc.begin(true);
        let mut count = 0;
        for header in headers.iter() {
            enc.key(header.key)?;
            match header.value {
                Some(v) => text_or_bytes(enc, v)?,
                None => enc.null(),
            }
            count += 1;
        }
        enc.end(h, count)?;
        n += 1;
    }
    enc.end(obj, n)
}

fn text_or_bytes(enc: &mut Encoder<'_>, b: &[u8]) -> Result<(), LayoutError> {
    match std::str::from_utf8(b) {
        Ok(s) => enc.str(s),
        Err(_) => enc.bytes(b),
    }
}

/// Which records are in flight, per partition in offset order, and which
/// offsets may be committed.
#[derive(Default)]
struct Tracker {
    next_id: u64,
    parts: HashMap<TopicPartition, Part>,
}

/// Where a batch is: still out, or reported back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Out,
    Accepted,
    /// Not delivered: it holds its partitions' commits for good.
    Failed,
}

#[derive(Default)]
struct Part {
    /// `(batch, last offset, fate)`, oldest first.
    pending: VecDeque<(u64, i64, Fate)>,
    /// The next offset to commit: past every accepted record.
    next: Option<i64>,
    /// What was last handed to librdkafka to store.
    stored: Option<i64>,
}

impl Part {
    fn out(&self) -> usize {
        self.pending.iter().filter(|e| e.2 == Fate::Out).count()
    }
}

impl Tracker {
    fn add(&mut self, ranges: &[(TopicPartition, i64, i64)]) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        for (tp, _, last) in ranges {
            self.parts
                .entry(tp.clone())
                .or_default()
                .pending
                .push_back((id, *last, Fate::Out));
        }
        id
    }

    /// A batch is through. A failed one stays at the head of its
    /// partitions, so nothing after it is committed.
    fn done(&mut self, id: u64, parts: &[TopicPartition], ok: bool) {
        for tp in parts {
            // Gone when the partition was revoked meanwhile.
            let Some(p) = self.parts.get_mut(tp) else {
                continue;
            };
            if let Some(e) = p.pending.iter_mut().find(|e| e.0 == id) {
                e.2 = if ok { Fate::Accepted } else { Fate::Failed };
            }
            while let Some(&(_, last, Fate::Accepted)) = p.pending.front() {
                p.next = Some(last + 1);
                p.pending.pop_front();
            }
        }
    }

    /// The offsets that moved since the last call.
    fn take_ready(&mut self) -> Vec<(TopicPartition, i64)> {
        self.parts
            .iter_mut()
            .filter(|(_, p)| p.next.is_some() && p.next != p.stored)
            .map(|(tp, p)| {
                p.stored = p.next;
                (tp.clone(), p.next.unwrap_or_default())
            })
            .collect()
    }

    /// Batches not yet reported back: what a revoke or a shutdown waits for.
    fn in_flight(&self) -> usize {
        self.parts.values().map(Part::out).sum()
    }

    fn in_flight_of(&self, parts: &[(String, i32)]) -> usize {
        self.parts
            .iter()
            .filter(|((t, p), _)| parts.iter().any(|(pt, pp)| pp == p && **pt == **t))
            .map(|(_, p)| p.out())
            .sum()
    }

    /// Lets partitions go; returns where each resumes, to commit.
    fn forget(&mut self, parts: &[(String, i32)]) -> Vec<(TopicPartition, i64)> {
        let mut out = Vec::new();
        self.parts.retain(|(t, p), part| {
            let revoked = parts.iter().any(|(pt, pp)| pp == p && **pt == **t);
            if let Some(next) = part.next.filter(|_| revoked) {
                out.push(((t.clone(), *p), next));
            }
            !revoked
        });
        out
    }
}

/// librdkafka's callbacks: rebalances, errors, statistics and logs.
struct Context(Arc<Shared>);

/// librdkafka's own log lines, as weir's, under the component's name.
pub(crate) fn log(component: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(component, "librdkafka {fac}: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(component, "librdkafka {fac}: {message}"),
        _ => tracing::debug!(component, "librdkafka {fac}: {message}"),
    }
}

/// Counts a client error under its reason (`broker_down` or
/// `kafka_error`); true when no broker can be reached.
pub(crate) fn count_error(stats: &Stats, error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
    let down = matches!(
        error.rdkafka_error_code(),
        Some(AllBrokersDown | BrokerTransportFailure)
    );
    stats.count_reason(if down { "broker_down" } else { "kafka_error" }, 1);
    down
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(&self.0.name, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let s = &self.0;
        if count_error(&s.stats, &error) {
            s.state.connected.store(false, Ordering::Relaxed);
            // Once per outage; librdkafka keeps retrying on its own.
            if !s.down_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(source = %s.name, "Kafka brokers unreachable ({reason}); retrying, nothing is committed meanwhile");
            }
        } else {
            tracing::warn!(source = %s.name, "Kafka: {reason}");
        }
    }

    fn stats(&self, stats: Statistics) {
        let s = &self.0;
        let up = stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        if up
            && !s.state.connected.swap(true, Ordering::Relaxed)
            && s.down_logged.swap(false, Ordering::Relaxed)
        {
            tracing::info!(source = %s.name, "Kafka brokers reachable again");
        }
        let (mut lag, mut parts) = (0i64, 0u64);
        for t in stats.topics.values() {
            for p in t.partitions.values() {
                if p.partition >= 0 && p.fetch_state == "active" {
                    parts += 1;
                    lag += p.consumer_lag.max(0);
                }
            }
        }
        s.state.lag.store(lag, Ordering::Relaxed);
        s.state.partitions.store(parts, Ordering::Relaxed);
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.0.release(consumer, tpl),
            Rebalance::Assign(tpl) => {
                tracing::info!(source = %self.0.name, "assigned {} partitions", tpl.count())
            }
            Rebalance::Error(e) => tracing::warn!(source = %self.0.name, "rebalance: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("logs".into(), p)
    }

    #[test]
    fn commits_follow_the_oldest_unaccepted_batch() {
        let mut t = Tracker::default();
        let a = t.add(&[(tp(0), 0, 9), (tp(1), 0, 4)]);
        let b = t.add(&[(tp(0), 10, 19)]);
        t.done(b, &[tp(0)], true);
        assert!(t.take_ready().is_empty(), "batch a is still out");
        t.done(a, &[tp(0), tp(1)], true);
        let mut ready = t.take_ready();
        ready.sort_by_key(|(tp, _)| tp.1);
        assert_eq!(ready, vec![(tp(0), 20), (tp(1), 5)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_failed_batch_holds_its_partition() {
        let mut t = Tracker::default();
        let a = t.add(&[(tp(0), 0, 9)]);
        let b = t.add(&[(tp(0), 10, 19)]);
        t.done(a, &[tp(0)], false);
        t.done(b, &[tp(0)], true);
        assert!(t.take_ready().is_empty());
        assert_eq!(t.in_flight(), 0, "both reported: nothing to wait for");
        assert_eq!(t.parts[&tp(0)].pending.len(), 2, "and nothing committed");
    }

    #[test]
    fn revoked_partitions_hand_back_their_offsets() {
        let mut t = Tracker::default();
        let a = t.add(&[(tp(0), 0, 9), (tp(1), 0, 9)]);
        t.done(a, &[tp(0), tp(1)], true);
        // Stored already, and still committed on revoke.
        let _ = t.take_ready();
        t.parts.get_mut(&tp(0)).unwrap().stored = None;
        let left = t.forget(&[("logs".into(), 1)]);
        assert_eq!(left, vec![(tp(1), 10)]);
        assert_eq!(t.in_flight_of(&[("logs".into(), 1)]), 0);
        assert_eq!(t.take_ready(), vec![(tp(0), 10)]);
        assert!(t.take_ready().is_empty(), "taken once");
    }
}
