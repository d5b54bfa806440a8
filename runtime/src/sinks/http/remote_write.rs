//! The `prometheus_remote_write` sink: metric events as they are, query
//! rows as the `prometheus_exporter` sink shows them, snappy-compressed
//! protobuf.

use super::Api;
use crate::codec::remote_write::{self, Label, Sample, TimeSeries};
use crate::sinks::prometheus::samples;
use weir_layout::{BatchBuf, EventKind};

pub struct RemoteWrite {
    pub namespace: String,
    pub labels: Option<Vec<String>>,
}

impl Api for RemoteWrite {
    fn encode(&mut self, batch: &BatchBuf, body: &mut Vec<u8>) -> usize {
        let mut series = Vec::new();
        let mut n = 0;
        for event in batch.iter() {
            let before = series.len();
            match event.kind() {
                EventKind::Metric => {
                    if let Some(Ok(m)) = event.metric() {
                        remote_write::push_series(&m, event.timestamp(), &mut series);
                    }
                }
                EventKind::Log => {
                    let ms = event.timestamp() / 1_000_000;
                    for (name, mut labels, value) in
                        samples(&event, &self.namespace, self.labels.as_deref())
                    {
                        labels.push(("__name__".into(), name));
                        labels.sort();
                        series.push(TimeSeries {
                            labels: labels
                                .into_iter()
                                .map(|(name, value)| Label { name, value })
                                .collect(),
                            samples: vec![Sample {
                                value,
                                timestamp: ms,
                            }],
                        });
                    }
                }
            }
            n += usize::from(series.len() > before);
        }
        match remote_write::encode(series) {
            Ok(b) => *body = b,
            Err(e) => {
                tracing::error!("cannot encode a remote-write request: {e}");
                return 0;
            }
        }
        n
    }
}
