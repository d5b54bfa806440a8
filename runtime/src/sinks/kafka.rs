//! The `kafka` sink: each event as one JSON record. A batch counts as
//! accepted, and its sources may commit, once the brokers acknowledged every
//! record of it.
//!
//! librdkafka retries on its own while brokers are away (`message.timeout.ms`
//! is unlimited unless set); a full producer queue makes the sink wait, and
//! so the pipeline behind it. A record the brokers refuse for good stops the
//! pipeline, as any sink that cannot write does, and its batch is not
//! committed.

use super::component::{Runner, Sink};
use super::template::Template;
use crate::codec::json_encode;
use crate::component::BuildContext;
use crate::config::KafkaSink;
use crate::topology::{drain, Ack, Batch, Rx, Shutdown, Stats};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_layout::Value;

/// How long the end of the input waits for records still on their way.
const FLUSH: Duration = Duration::from_secs(30);

impl Sink for KafkaSink {
    fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner> {
        if let Err(msg) = Template::parse(&self.topic) {
            cx.problem("topic", msg);
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression.as_str()) {
            let what = format!(
                "`{}` is not none, gzip, snappy, lz4 or zstd",
                self.compression
            );
            cx.problem("compression", what);
        }
        if !["all", "-1", "0", "1"].contains(&self.acks.as_str()) {
            cx.problem("acks", format!("`{}` is not all, 1 or 0", self.acks));
        }
        let (name, cfg) = (cx.name.to_string(), self.clone());
        Some(Box::new(move |input, stats, shutdown| {
            run(&name, &cfg, input, stats, shutdown)
        }))
    }
}

pub fn run(name: &str, cfg: &KafkaSink, input: Rx, stats: Arc<Stats>, shutdown: Shutdown) {
    let topic = match Template::parse(&cfg.topic) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(sink = name, "topic: {e}");
            shutdown.trigger();
            return drain(&input);
        }
    };
    let ctx = Context {
        name: name.to_string(),
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        refused: AtomicBool::new(false),
    };
    let producer: ThreadedProducer<Context> = match client_config(cfg).create_with_context(ctx) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(sink = name, "cannot create the Kafka producer: {e}");
            shutdown.trigger();
            return drain(&input);
        }
    };
    let mut buf = Vec::with_capacity(4096);
    let mut name_buf = String::new();
    let mut key_buf = String::new();
    while let Ok(Batch { events, acks }) = input.recv_blocking() {
        Stats::add(&stats.events_in, events.len());
        let mut bytes = 0;
        // Shared by the batch's records; the last delivery report lets go.
        let batch = Arc::new(InFlight { acks });
        for event in events.iter() {
            let topic_name = match topic.constant() {
                Some(t) => t,
                None => match topic.render(&event, &mut name_buf) {
                    Ok(()) => name_buf.as_str(),
                    Err(field) => {
                        stats.count_reason("topic_template", 1);
                        Stats::add(&stats.errors, 1);
                        tracing::warn!(
                            sink = name,
                            "event without `{field}` for the topic {:?}; dropped",
                            cfg.topic
                        );
                        continue;
                    }
                },
            };
            buf.clear();
            json_encode::write_event(&mut buf, &event);
            let key = cfg
                .key_field
                .as_deref()
                .and_then(|f| key_of(&event, f, &mut key_buf));
            let mut record =
                BaseRecord::with_opaque_to(topic_name, batch.clone()).payload(&buf[..]);
            if let Some(k) = key {
                record = record.key(k);
            }
            // A full queue: wait for deliveries to make room.
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err((e, r)) => {
                        tracing::error!(
                            sink = name,
                            "cannot produce to {}: {e}; stopping the pipeline",
                            r.topic
                        );
                        r.delivery_opaque.fail();
                        shutdown.trigger();
                        return drain(&input);
                    }
                }
            }
            bytes += buf.len();
        }
        Stats::add(&stats.bytes_out, bytes);
        drop(batch);
    }
    if let Err(e) = producer.flush(FLUSH) {
        let left = producer.in_flight_count();
        tracing::error!(
            sink = name,
            "{left} records not delivered in {FLUSH:?} ({e}); their sources do not commit them"
        );
    }
}

fn client_config(cfg: &KafkaSink) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("compression.codec", &cfg.compression)
        .set("acks", &cfg.acks)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("batch.size", cfg.batch_max_bytes.to_string())
        // Keep retrying while brokers are away: the pipeline waits.
        .set("message.timeout.ms", "0")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &cfg.librdkafka_options {
        c.set(k, v);
    }
    c
}

/// The key: a field's text, or a number written out.
fn key_of<'a>(
    event: &weir_layout::EventView<'a>,
    field: &str,
    buf: &'a mut String,
) -> Option<&'a [u8]> {
    match event.lookup(field)? {
        Value::Str(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        Value::Int(i) => {
            *buf = i.to_string();
            Some(buf.as_bytes())
        }
        _ => None,
    }
}

/// One batch's records on their way: the tokens go when the last report
/// comes back.
struct InFlight {
    acks: Vec<Ack>,
}

impl InFlight {
    fn fail(&self) {
        for a in &self.acks {
            a.fail();
        }
    }
}

struct Context {
    name: String,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    refused: AtomicBool,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::sources::kafka::log(&self.name, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::sources::kafka::count_error(&self.stats, &error);
        tracing::warn!(sink = %self.name, "Kafka: {reason}");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<InFlight>) {
        match result {
            Ok(_) => Stats::add(&self.stats.events_out, 1),
            Err((e, m)) => {
                use rdkafka::Message;
                batch.fail();
                Stats::add(&self.stats.errors, 1);
                self.stats.count_reason("delivery_failed", 1);
                if !self.refused.swap(true, Ordering::Relaxed) {
                    tracing::error!(sink = %self.name, "a record to {} was not delivered: {e}; stopping the pipeline (its source does not commit it)", m.topic());
                }
                self.shutdown.trigger();
            }
        }
    }
}
