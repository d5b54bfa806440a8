//! Prometheus remote write 1.0: snappy-compressed protobuf `WriteRequest`s,
//! in (a source) and out (a sink).
//!
//! The messages are written out with prost's derive rather than generated,
//! so that building needs no `protoc`. Native histograms (field 4 of
//! `TimeSeries`) and exemplars are left out: prost skips what it does not
//! know, so requests carrying them still decode.

use prost::Message;
use std::collections::HashMap;
use weir_layout::{BatchBuf, Metric, MetricKind, MetricValue};

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, as receivers require.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

/// Why a request body was refused; the whole body is, as a sender retries
/// or drops a request as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Snappy(String),
    TooLarge {
        size: usize,
        max: usize,
    },
    Protobuf(String),
    /// The samples decode to more than `max_decoded` bytes of events (each
    /// carries its series' labels).
    OverBudget(crate::OverBudget),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Snappy(e) => write!(f, "body is not snappy block-compressed data: {e}"),
            Error::TooLarge { size, max } => write!(
                f,
                "body would decompress to {size} bytes, over the limit of {max}"
            ),
            Error::Protobuf(e) => write!(f, "body is not a remote write WriteRequest: {e}"),
            Error::OverBudget(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

/// What a request gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Metric events appended, one per sample.
    pub samples: usize,
    /// Series without a `__name__`, or that the batch could not hold (a label
    /// name over 64 KiB).
    pub skipped: usize,
}

/// Decodes a remote write body into metric events appended to `batch`, one
/// per sample.
///
/// A family is a counter when the request's metadata says so; without
/// metadata for it (senders may send none), a name ending in `_total` is,
/// by the Prometheus naming convention. The decompressed size is read from
/// the snappy header and checked against `max_bytes` before anything is
/// allocated, so a small body cannot claim gigabytes; the events, which
/// repeat their series' labels per sample, are bounded by `max_decoded` as
/// they are written (`Err`, and nothing of the body in `batch`, past it).
pub fn decode(
    body: &[u8],
    max_bytes: usize,
    max_decoded: usize,
    batch: &mut BatchBuf,
) -> Result<Decoded, Error> {
    let snappy = |e: snap::Error| Error::Snappy(e.to_string());
    let size = snap::raw::decompress_len(body).map_err(snappy)?;
    if size > max_bytes {
        return Err(Error::TooLarge {
            size,
            max: max_bytes,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(snappy)?;
    let req = WriteRequest::decode(raw.as_slice()).map_err(|e| Error::Protobuf(e.to_string()))?;
    drop(raw);

    let types: HashMap<&str, i32> = req
        .metadata
        .iter()
        .map(|m| (m.metric_family_name.as_str(), m.r#type))
        .collect();
    let kind_of = |name: &str| {
        // OpenMetrics names the family without the `_total` its samples have.
        let meta = types
            .get(name)
            .or_else(|| types.get(name.strip_suffix("_total")?));
        let counter = match meta {
            Some(&t) => t == MetricType::Counter as i32,
            None => name.ends_with("_total"),
        };
        if counter {
            MetricKind::Counter
        } else {
            MetricKind::Gauge
        }
    };

    let budget = crate::DecodeBudget::new(batch, max_decoded);
    let mut done = Decoded::default();
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for series in &req.timeseries {
        labels.clear();
        let mut name = "";
        for l in &series.labels {
            if l.name == "__name__" {
                name = &l.value;
            } else {
                labels.push((&l.name, &l.value));
            }
        }
        if name.is_empty() {
            done.skipped += 1;
            continue;
        }
        let kind = kind_of(name);
        for s in &series.samples {
            let ns = s.timestamp.saturating_mul(1_000_000);
            let value = MetricValue::Single(s.value);
            if batch.push_metric(ns, name, kind, &labels, &value).is_err() {
                done.skipped += 1;
                break;
            }
            done.samples += 1;
            if let Err(e) = budget.check(batch) {
                budget.undo(batch);
                return Err(Error::OverBudget(e));
            }
        }
    }
    Ok(done)
}

/// Appends the series remote write carries for one metric event.
///
/// Remote write 1.0 has no histogram or summary value: they travel as the
/// series Prometheus would scrape (`x_bucket{le}`, `x_sum`, `x_count`;
/// `x{quantile}`, `x_sum`, `x_count`), with bounds written as Prometheus writes
/// them so that they join the series Prometheus scraped itself.
pub fn push_series(metric: &Metric<'_>, timestamp_ns: i64, out: &mut Vec<TimeSeries>) {
    let timestamp = timestamp_ns.div_euclid(1_000_000);
    let bound_label = match metric.value {
        MetricValue::Histogram { .. } => "le",
        MetricValue::Summary { .. } => "quantile",
        MetricValue::Single(_) => "",
    };
    let mut base: Vec<Label> = metric
        .labels
        .iter()
        // An empty value is no label, to Prometheus.
        .filter(|(k, v)| *k != "__name__" && *k != bound_label && !v.is_empty())
        .map(|&(k, v)| label(k, v.to_string()))
        .chain([label("__name__", String::new())])
        .collect();
    base.sort_by(|a, b| a.name.cmp(&b.name));
    let name_at = base
        .iter()
        .position(|l| l.name == "__name__")
        .unwrap_or_default();
    let one = |suffix: &str, bound: Option<f64>, value: f64| {
        let mut labels = base.clone();
        labels[name_at].value = format!("{}{suffix}", metric.name);
        if let Some(b) = bound {
            let at = labels.partition_point(|l| l.name.as_str() < bound_label);
            labels.insert(at, label(bound_label, format_bound(b)));
        }
        TimeSeries {
            labels,
            samples: vec![Sample { value, timestamp }],
        }
    };
    match &metric.value {
        MetricValue::Single(v) => out.push(one("", None, *v)),
        MetricValue::Histogram {
            count,
            sum,
            buckets,
        } => {
            out.extend(
                buckets
                    .iter()
                    .map(|&(le, c)| one("_bucket", Some(le), c as f64)),
            );
            out.push(one("_sum", None, *sum));
            out.push(one("_count", None, *count as f64));
        }
        MetricValue::Summary {
            count,
            sum,
            quantiles,
        } => {
            out.extend(quantiles.iter().map(|&(q, v)| one("", Some(q), v)));
            out.push(one("_sum", None, *sum));
            out.push(one("_count", None, *count as f64));
        }
    }
}

fn label(name: &str, value: String) -> Label {
    Label {
        name: name.to_string(),
        value,
    }
}

/// A snappy-compressed `WriteRequest` body. Fails only for a request over
/// snappy's 4 GiB limit.
pub fn encode(series: Vec<TimeSeries>) -> Result<Vec<u8>, Error> {
    let req = WriteRequest {
        timeseries: series,
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .map_err(|e| Error::Snappy(e.to_string()))
}

/// A bound as Prometheus writes `le` and `quantile` labels (Go's shortest
/// `%g`: `0.5`, `100000`, `1e+06`, `+Inf`); `le="1.0"` would be another series
/// than Prometheus' `le="1"`.
pub fn format_bound(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest digits that read back, as Go's does.
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    let mut out = String::from(sign);
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{exp_sign}{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], value: f64, timestamp: i64) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|&(k, v)| label(k, v.to_string()))
                .collect(),
            samples: vec![Sample { value, timestamp }],
        }
    }

    fn compress(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    fn names_and_kinds(b: &BatchBuf) -> Vec<(String, MetricKind)> {
        b.iter()
            .map(|e| {
                let m = e.metric().unwrap().unwrap();
                (m.name.to_string(), m.kind)
            })
            .collect()
    }

    #[test]
    fn bounds_are_written_as_prometheus_writes_them() {
        let cases = [
            (0.5, "0.5"),
            (1.0, "1"),
            (2.5, "2.5"),
            (10.0, "10"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1.5e6, "1.5e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.005, "0.005"),
            (1e-5, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (0.0, "0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            assert_eq!(format_bound(v), want, "{v}");
        }
    }

    #[test]
    fn metrics_round_trip_as_the_series_prometheus_would_scrape() {
        let mut src = BatchBuf::new();
        let t = 1_700_000_000_123_456_789;
        src.push_metric(
            t,
            "http_requests_total",
            MetricKind::Counter,
            &[("svc", "api"), ("Code", "200"), ("empty", "")],
            &MetricValue::Single(42.0),
        )
        .unwrap();
        src.push_metric(
            t,
            "temp",
            MetricKind::Gauge,
            &[],
            &MetricValue::Single(-1.5),
        )
        .unwrap();
        let h = MetricValue::Histogram {
            count: 3,
            sum: 1.5,
            buckets: vec![(0.5, 1), (1.0, 3), (f64::INFINITY, 3)],
        };
        src.push_metric(t, "lat", MetricKind::Histogram, &[("svc", "api")], &h)
            .unwrap();
        let s = MetricValue::Summary {
            count: 2,
            sum: 3.0,
            quantiles: vec![(0.5, 1.0), (0.99, 2.0)],
        };
        src.push_metric(t, "q", MetricKind::Summary, &[], &s)
            .unwrap();

        let mut out = Vec::new();
        for e in src.iter() {
            push_series(&e.metric().unwrap().unwrap(), e.timestamp(), &mut out);
        }
        assert_eq!(out.len(), 2 + 5 + 4);
        let names: Vec<Vec<&str>> = out
            .iter()
            .map(|s| s.labels.iter().map(|l| l.name.as_str()).collect())
            .collect();
        assert_eq!(names[0], ["Code", "__name__", "svc"], "byte order");
        assert_eq!(names[2], ["__name__", "le", "svc"]);
        assert_eq!(
            out[0].samples,
            [Sample {
                value: 42.0,
                timestamp: 1_700_000_000_123
            }]
        );

        let body = encode(out).unwrap();
        let mut back = BatchBuf::new();
        let got = decode(&body, 1 << 20, usize::MAX, &mut back).unwrap();
        assert_eq!(
            got,
            Decoded {
                samples: 11,
                skipped: 0
            }
        );
        let m: Vec<_> = back.iter().map(|e| e.metric().unwrap().unwrap()).collect();
        assert_eq!(back.get(0).unwrap().timestamp(), 1_700_000_000_123_000_000);
        assert_eq!(
            (m[0].name, m[0].kind, &m[0].labels),
            (
                "http_requests_total",
                MetricKind::Counter,
                &vec![("Code", "200"), ("svc", "api")]
            )
        );
        assert_eq!((m[1].name, m[1].kind), ("temp", MetricKind::Gauge));
        assert_eq!(m[1].value, MetricValue::Single(-1.5));
        let lat: Vec<_> = m[2..7]
            .iter()
            .map(|m| (m.name, m.labels.clone(), m.value.clone()))
            .collect();
        assert_eq!(
            lat,
            [
                (
                    "lat_bucket",
                    vec![("le", "0.5"), ("svc", "api")],
                    MetricValue::Single(1.0)
                ),
                (
                    "lat_bucket",
                    vec![("le", "1"), ("svc", "api")],
                    MetricValue::Single(3.0)
                ),
                (
                    "lat_bucket",
                    vec![("le", "+Inf"), ("svc", "api")],
                    MetricValue::Single(3.0)
                ),
                ("lat_sum", vec![("svc", "api")], MetricValue::Single(1.5)),
                ("lat_count", vec![("svc", "api")], MetricValue::Single(3.0)),
            ]
        );
        let q: Vec<_> = m[7..].iter().map(|m| (m.name, m.labels.clone())).collect();
        assert_eq!(
            q,
            [
                ("q", vec![("quantile", "0.5")]),
                ("q", vec![("quantile", "0.99")]),
                ("q_sum", vec![]),
                ("q_count", vec![]),
            ]
        );
    }

    #[test]
    fn metadata_decides_counters_and_total_decides_without_it() {
        let meta = |name: &str, t: MetricType| MetricMetadata {
            r#type: t as i32,
            metric_family_name: name.into(),
            ..Default::default()
        };
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "requests")], 1.0, 1),
                series(&[("__name__", "odd_total")], 1.0, 1),
                series(&[("__name__", "om_total")], 1.0, 1),
                series(&[("__name__", "plain_total")], 1.0, 1),
                series(&[("__name__", "plain")], 1.0, 1),
            ],
            metadata: vec![
                meta("requests", MetricType::Counter),
                meta("odd_total", MetricType::Gauge),
                meta("om", MetricType::Counter),
            ],
        };
        let mut b = BatchBuf::new();
        decode(&compress(&req), 1 << 20, usize::MAX, &mut b).unwrap();
        let kinds: Vec<_> = names_and_kinds(&b).into_iter().map(|(_, k)| k).collect();
        use MetricKind::*;
        assert_eq!(kinds, [Counter, Gauge, Counter, Counter, Gauge]);
    }

    #[test]
    fn a_series_without_a_name_is_skipped_and_counted() {
        let mut two = series(&[("__name__", "up"), ("job", "a")], 1.0, 5);
        two.samples.push(Sample {
            value: 0.0,
            timestamp: 6,
        });
        let req = WriteRequest {
            timeseries: vec![series(&[("job", "a")], 1.0, 5), two],
            metadata: vec![],
        };
        let mut b = BatchBuf::new();
        let got = decode(&compress(&req), 1 << 20, usize::MAX, &mut b).unwrap();
        assert_eq!(
            got,
            Decoded {
                samples: 2,
                skipped: 1
            }
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(1).unwrap().timestamp(), 6_000_000);
    }

    /// Labels are copied into each sample's event: 2,000 samples under a
    /// 1 KiB label make ~2 MB of events from a body of a few KB.
    #[test]
    fn labels_shared_by_many_samples_are_bounded_as_written() {
        let mut s = series(&[("__name__", "up"), ("big", &"x".repeat(1024))], 1.0, 1);
        s.samples = (0..2000)
            .map(|t| Sample {
                value: 1.0,
                timestamp: t,
            })
            .collect();
        let body = compress(&WriteRequest {
            timeseries: vec![s],
            metadata: vec![],
        });
        assert!(body.len() < 40_000);
        let mut b = BatchBuf::new();
        let e = decode(&body, 10 << 20, 1 << 20, &mut b).unwrap_err();
        assert!(matches!(e, Error::OverBudget(_)), "{e}");
        assert!(b.is_empty());
        assert_eq!(
            decode(&body, 10 << 20, 4 << 20, &mut b).unwrap().samples,
            2000
        );
    }

    #[test]
    fn a_body_claiming_too_much_is_refused_before_decompressing() {
        // The snappy header: a varint length of 4 GiB - 1, then one byte.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut b = BatchBuf::new();
        let e = decode(&body, 10 << 20, usize::MAX, &mut b).unwrap_err();
        assert_eq!(
            e,
            Error::TooLarge {
                size: u32::MAX as usize,
                max: 10 << 20
            }
        );
        assert_eq!(
            e.to_string(),
            "body would decompress to 4294967295 bytes, over the limit of 10485760"
        );
        // The limit is on the decompressed size, not the body's.
        let req = WriteRequest {
            timeseries: vec![series(&[("__name__", "x")], 1.0, 1); 100],
            metadata: vec![],
        };
        let body = compress(&req);
        let size = req.encoded_len();
        assert!(body.len() < size);
        assert!(decode(&body, size, usize::MAX, &mut b).is_ok());
        assert!(matches!(
            decode(&body, size - 1, usize::MAX, &mut b),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_snappy_and_bad_protobuf_say_which() {
        let mut b = BatchBuf::new();
        for body in [&b"\x05\xff\xff"[..], b"\x80"] {
            let e = decode(body, 1 << 20, usize::MAX, &mut b).unwrap_err();
            assert!(matches!(e, Error::Snappy(_)), "{e:?}");
            assert!(e.to_string().starts_with("body is not snappy"), "{e}");
        }
        let junk = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff")
            .unwrap();
        let e = decode(&junk, 1 << 20, usize::MAX, &mut b).unwrap_err();
        assert!(matches!(e, Error::Protobuf(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("body is not a remote write WriteRequest: "),
            "{e}"
        );
        assert!(b.is_empty());
    }

    #[test]
    fn any_body_is_decoded_or_refused_without_panicking() {
        let mut out = Vec::new();
        let m = weir_layout::Metric {
            name: "lat",
            kind: MetricKind::Histogram,
            labels: vec![("svc", "api")],
            value: MetricValue::Histogram {
                count: 3,
                sum: 1.5,
                buckets: vec![(0.5, 1), (f64::INFINITY, 3)],
            },
        };
        push_series(&m, 0, &mut out);
        let body = encode(out).unwrap();
        for cut in 0..body.len() {
            let _ = decode(&body[..cut], 1 << 20, usize::MAX, &mut BatchBuf::new());
        }
        for i in 0..body.len() {
            for x in [0, 0x7f, 0x80, 0xff] {
                let mut bad = body.clone();
                bad[i] = x;
                let mut b = BatchBuf::new();
                if let Ok(d) = decode(&bad, 1 << 20, usize::MAX, &mut b) {
                    assert_eq!(d.samples, b.len());
                }
            }
        }
    }
}
