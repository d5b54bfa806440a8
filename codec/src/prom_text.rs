//! Prometheus text exposition (0.0.4) and OpenMetrics 1.0 text into metric
//! events.
//!
//! A scrape is read line by line, and a line that cannot be used is counted
//! and described while the rest still counts: one odd line from an exporter
//! should not cost the whole target. Names and label values are borrowed from
//! the input; only label values with escapes are copied. Histogram and summary
//! lines are gathered per family (both formats keep a family's lines together)
//! into one event per label set, as the event model holds them whole.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Display;
use weir_layout::{BatchBuf, MetricKind, MetricValue};

/// What a scrape gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Metric events appended.
    pub series: usize,
    /// Lines (or gathered series) that could not be used.
    pub errors: usize,
    /// The first [`MAX_KEPT_ERRORS`] errors, each `line N: what was wrong`.
    pub first_errors: Vec<String>,
}

/// Enough to diagnose an exporter; a broken one may have a bad line per series.
pub const MAX_KEPT_ERRORS: usize = 10;

/// Parses one scrape into metric events appended to `batch`.
///
/// `openmetrics` is true when the response's Content-Type said
/// `application/openmetrics-text` (float-second timestamps, exemplars,
/// `# EOF`). Samples without a timestamp get `default_ns`, the scrape time.
/// `target_labels` (`instance`, `job`) are added to every series; a series'
/// own label of the same name is kept as `exported_<name>`, as Prometheus does
/// with `honor_labels: false`, so that the target identity always wins.
pub fn parse(
    text: &[u8],
    openmetrics: bool,
    default_ns: i64,
    target_labels: &[(&str, &str)],
    batch: &mut BatchBuf,
) -> Parsed {
    let exported: Vec<String> = target_labels
        .iter()
        .map(|(k, _)| format!("exported_{k}"))
        .collect();
    let mut out = Out {
        batch,
        targets: target_labels,
        exported: &exported,
        scratch: Vec::new(),
        parsed: Parsed::default(),
    };
    let mut family = Family::default();
    let mut labels: Vec<Label<'_>> = Vec::new();
    let mut seen_eof = false;
    let mut lines = 0;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if seen_eof {
            if !raw.iter().all(|b| b.is_ascii_whitespace()) {
                out.error(n, "text after `# EOF`");
                break;
            }
            continue;
        }
        if !raw.is_empty() {
            lines = n;
        }
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l.trim_start_matches(WS),
            Err(e) => {
                out.error(
                    n,
                    format_args!("invalid UTF-8 at column {}", e.valid_up_to() + 1),
                );
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            seen_eof = family.comment(n, comment, openmetrics, &mut out);
            continue;
        }
        labels.clear();
        let sample = match parse_sample(line, openmetrics, &mut labels) {
            Ok(s) => s,
            Err(e) => {
                out.error(n, e);
                continue;
            }
        };
        labels.sort_unstable_by_key(|l| l.0);
        if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            out.error(n, format_args!("duplicate label `{}`", w[0].0));
            continue;
        }
        let ts = sample.ts.unwrap_or(default_ns);
        let role = family.role(sample.name).unwrap_or_else(|| {
            // Outside the family being read: an untyped sample.
            family.flush(&mut out);
            Role::Single(MetricKind::Gauge)
        });
        match role {
            Role::Created => {}
            Role::Single(kind) => out.emit(
                n,
                ts,
                sample.name,
                kind,
                &labels,
                &MetricValue::Single(sample.value),
            ),
            part => family.add(n, part, ts, sample.value, &mut labels, &mut out),
        }
    }
    family.flush(&mut out);
    if openmetrics && !seen_eof {
        out.error(
            lines.max(1),
            "no `# EOF` at the end: the exposition may be truncated",
        );
    }
    out.parsed
}

const WS: [char; 2] = [' ', '\t'];

/// A name (never escaped, so always borrowed) and a value.
type Label<'t> = (&'t str, Cow<'t, str>);

/// A family's type, from `# TYPE`; 0.0.4's `untyped` is OpenMetrics' `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "counter" => Type::Counter,
            "gauge" => Type::Gauge,
            "histogram" => Type::Histogram,
            "gaugehistogram" => Type::GaugeHistogram,
            "summary" => Type::Summary,
            "info" => Type::Info,
            "stateset" => Type::StateSet,
            "untyped" | "unknown" => Type::Unknown,
            _ => return None,
        })
    }
}

/// What a sample is to its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A series of its own.
    Single(MetricKind),
    /// `_created`: a reset time, which the event model has no place for.
    Created,
    Bucket,
    Quantile,
    Sum,
    Count,
}

/// A histogram's or summary's lines for one label set.
struct Group<'t> {
    /// Without `le` / `quantile`, sorted by name.
    labels: Vec<Label<'t>>,
    /// Its first line, to place errors found when it is complete.
    line: usize,
    ts: i64,
    sum: Option<f64>,
    count: Option<f64>,
    /// `(le, cumulative count)` or `(quantile, value)`.
    points: Vec<(f64, f64)>,
}

/// The family whose lines are being read (after its `# TYPE`).
#[derive(Default)]
struct Family<'t> {
    /// Empty when there is none.
    name: &'t str,
    ty: Option<Type>,
    groups: Vec<Group<'t>>,
    index: HashMap<Vec<Label<'t>>, usize>,
}

impl<'t> Family<'t> {
    /// Handles a `#` line; true at OpenMetrics' `# EOF`.
    fn comment(
        &mut self,
        n: usize,
        comment: &'t str,
        openmetrics: bool,
        out: &mut Out<'_>,
    ) -> bool {
        let (keyword, rest) = token(comment);
        match keyword {
            "EOF" if openmetrics => {
                if !rest.trim_matches(WS).is_empty() {
                    out.error(n, "text after `# EOF`");
                }
                self.flush(out);
                return true;
            }
            "TYPE" => {
                self.flush(out);
                let (name, rest) = token(rest);
                let (ty, _) = token(rest);
                if !is_metric_name(name) {
                    out.error(
                        n,
                        format_args!("`# TYPE` names no valid metric: {}", near(name)),
                    );
                    return false;
                }
                match Type::parse(ty) {
                    Some(ty) => {
                        self.name = name;
                        self.ty = Some(ty);
                    }
                    None => out.error(
                        n,
                        format_args!("`# TYPE {name}`: unknown type {}", near(ty)),
                    ),
                }
            }
            // Metadata of another family ends this one.
            "HELP" | "UNIT" if token(rest).0 != self.name => self.flush(out),
            _ => {}
        }
        false
    }

    /// What `sample` is to this family; `None` when it is not one of its.
    fn role(&self, sample: &str) -> Option<Role> {
        let suffix = sample.strip_prefix(self.name)?;
        use Type::*;
        Some(match (self.ty?, suffix) {
            (Counter, "" | "_total") => Role::Single(MetricKind::Counter),
            (Counter | Histogram | GaugeHistogram | Summary, "_created") => Role::Created,
            (Gauge | StateSet | Unknown, "") | (Info, "_info") => Role::Single(MetricKind::Gauge),
            (Histogram | GaugeHistogram, "_bucket") => Role::Bucket,
            (Summary, "") => Role::Quantile,
            (Histogram | Summary, "_sum") | (GaugeHistogram, "_sum" | "_gsum") => Role::Sum,
            (Histogram | Summary, "_count") | (GaugeHistogram, "_count" | "_gcount") => Role::Count,
            _ => return None,
        })
    }

    /// Adds a bucket, quantile, sum or count line to its label set's group.
    fn add(
        &mut self,
        n: usize,
        role: Role,
        ts: i64,
        value: f64,
        labels: &mut Vec<Label<'t>>,
        out: &mut Out<'_>,
    ) {
        let bound = match role {
            Role::Bucket | Role::Quantile => {
                let key = if role == Role::Bucket {
                    "le"
                } else {
                    "quantile"
                };
                let Ok(at) = labels.binary_search_by_key(&key, |l| l.0) else {
                    out.error(
                        n,
                        format_args!("`{}` sample without a `{key}` label", self.name),
                    );
                    return;
                };
                let (_, v) = labels.remove(at);
                match v.parse::<f64>() {
                    Ok(b) if !b.is_nan() => Some(b),
                    _ => {
                        out.error(
                            n,
                            format_args!("`{key}` label {} is not a number", near(&v)),
                        );
                        return;
                    }
                }
            }
            _ => None,
        };
        if matches!(role, Role::Bucket | Role::Count) && !(value >= 0.0 && value.is_finite()) {
            out.error(
                n,
                format_args!("count {value} is not a finite non-negative number"),
            );
            return;
        }
        let i = match self.groups.last() {
            // Lines of a label set usually follow each other: no lookup.
            Some(g) if g.labels == *labels => self.groups.len() - 1,
            _ => match self.index.get(labels.as_slice()) {
                Some(&i) => i,
                None => {
                    self.index.insert(labels.clone(), self.groups.len());
                    self.groups.push(Group {
                        labels: labels.clone(),
                        line: n,
                        ts,
                        sum: None,
                        count: None,
                        points: Vec::new(),
                    });
                    self.groups.len() - 1
                }
            },
        };
        let g = &mut self.groups[i];
        let slot = match role {
            Role::Sum => &mut g.sum,
            Role::Count => &mut g.count,
            _ => {
                g.points.push((bound.unwrap_or(f64::NAN), value));
                return;
            }
        };
        if slot.is_some() {
            let what = if role == Role::Sum { "sum" } else { "count" };
            out.error(
                n,
                format_args!("second {what} for the same `{}` series", self.name),
            );
        } else {
            *slot = Some(value);
        }
    }

    /// Emits the gathered histograms or summaries and forgets the family.
    fn flush(&mut self, out: &mut Out<'_>) {
        let name = std::mem::take(&mut self.name);
        let ty = self.ty.take();
        self.index.clear();
        for g in self.groups.drain(..) {
            let (kind, value) = match ty {
                Some(Type::Summary) => (
                    MetricKind::Summary,
                    summary(name, g.line, g.sum, g.count, g.points, out),
                ),
                _ => (
                    MetricKind::Histogram,
                    histogram(name, g.line, g.sum, g.count, g.points, out),
                ),
            };
            out.emit(g.line, g.ts, name, kind, &g.labels, &value);
        }
    }
}

/// Sorts the points and drops repeated bounds, keeping the first of each.
fn sort_points(
    name: &str,
    line: usize,
    what: &str,
    points: &mut Vec<(f64, f64)>,
    out: &mut Out<'_>,
) {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let before = points.len();
    points.dedup_by(|b, a| a.0 == b.0);
    if points.len() < before {
        out.error(
            line,
            format_args!(
                "`{name}` repeats `{what}` bounds; kept the first line of each, dropped {}",
                before - points.len()
            ),
        );
    }
}

fn histogram(
    name: &str,
    line: usize,
    sum: Option<f64>,
    count: Option<f64>,
    mut points: Vec<(f64, f64)>,
    out: &mut Out<'_>,
) -> MetricValue {
    sort_points(name, line, "le", &mut points, out);
    // Counts were checked finite and non-negative.
    let mut buckets: Vec<(f64, u64)> = points
        .into_iter()
        .map(|(le, c)| (le, c.round() as u64))
        .collect();
    let inf = buckets.last().filter(|b| b.0 == f64::INFINITY).map(|b| b.1);
    let count = count.map(|c| c.round() as u64);
    if let (None, Some(c)) = (inf, count) {
        // `_count` is the `+Inf` bucket by definition.
        buckets.push((f64::INFINITY, c));
    }
    MetricValue::Histogram {
        count: count.or(inf).or(buckets.last().map(|b| b.1)).unwrap_or(0),
        // NaN: unknown, rather than a made-up zero.
        sum: sum.unwrap_or(f64::NAN),
        buckets,
    }
}

fn summary(
    name: &str,
    line: usize,
    sum: Option<f64>,
    count: Option<f64>,
    mut points: Vec<(f64, f64)>,
    out: &mut Out<'_>,
) -> MetricValue {
    sort_points(name, line, "quantile", &mut points, out);
    MetricValue::Summary {
        count: count.map_or(0, |c| c.round() as u64),
        sum: sum.unwrap_or(f64::NAN),
        quantiles: points,
    }
}

/// Where events and errors go.
struct Out<'o> {
    batch: &'o mut BatchBuf,
    targets: &'o [(&'o str, &'o str)],
    /// `exported_<name>` for each target label, made once per scrape.
    exported: &'o [String],
    /// The label list handed to the batch, kept empty between events so that
    /// its allocation serves every event.
    scratch: Vec<(&'static str, &'static str)>,
    parsed: Parsed,
}

impl Out<'_> {
    fn error(&mut self, line: usize, what: impl Display) {
        let p = &mut self.parsed;
        p.errors += 1;
        if p.first_errors.len() < MAX_KEPT_ERRORS {
            p.first_errors.push(format!("line {line}: {what}"));
        }
    }

    /// Appends one event: `labels` (sorted) with the target labels added.
    fn emit(
        &mut self,
        line: usize,
        ts: i64,
        name: &str,
        kind: MetricKind,
        labels: &[Label<'_>],
        value: &MetricValue,
    ) {
        let (targets, exported) = (self.targets, self.exported);
        let has = |n: &str| {
            labels.binary_search_by_key(&n, |l| l.0).is_ok() || targets.iter().any(|(k, _)| *k == n)
        };
        let target = |k: &str| targets.iter().position(|(t, _)| *t == k);
        // `exported_exported_…` when `exported_<name>` is taken too, as
        // Prometheus does; allocated only then.
        let mut deeper: Vec<String> = Vec::new();
        for (k, _) in labels {
            if let Some(i) = target(k) {
                if has(&exported[i]) {
                    let mut n = exported[i].clone();
                    while has(&n) {
                        n.insert_str(0, "exported_");
                    }
                    deeper.push(n);
                }
            }
        }
        let mut deeper = deeper.iter();
        let mut refs = reuse(std::mem::take(&mut self.scratch));
        for (k, v) in labels {
            let k: &str = match target(k) {
                None => k,
                Some(i) if !has(&exported[i]) => &exported[i],
                Some(_) => deeper.next().map_or(k, String::as_str),
            };
            refs.push((k, v));
        }
        refs.extend_from_slice(targets);
        refs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let r = self.batch.push_metric(ts, name, kind, &refs, value);
        self.scratch = reuse(refs);
        match r {
            Ok(()) => self.parsed.series += 1,
            Err(e) => self.error(line, format_args!("`{}`: {e}", clip(name))),
        }
    }
}

/// Empties `v` and hands its allocation on for borrows of another lifetime
/// (an in-place collect of an empty vector of a same-sized type).
fn reuse<'a, 'b>(mut v: Vec<(&'a str, &'a str)>) -> Vec<(&'b str, &'b str)> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

struct Sample<'t> {
    name: &'t str,
    value: f64,
    ts: Option<i64>,
}

/// `name{labels} value [timestamp] [# exemplar]`; labels go to `labels`.
fn parse_sample<'t>(
    line: &'t str,
    openmetrics: bool,
    labels: &mut Vec<Label<'t>>,
) -> Result<Sample<'t>, String> {
    let b = line.as_bytes();
    let mut i = b
        .iter()
        .enumerate()
        .position(|(i, &c)| !is_name_byte(c, i == 0, true))
        .unwrap_or(b.len());
    if i == 0 {
        return Err(format!("expected a metric name, found {}", near(line)));
    }
    let name = &line[..i];
    i = skip_ws(b, i);
    if b.get(i) == Some(&b'{') {
        i = skip_ws(b, parse_labels(line, i + 1, labels)?);
    } else if i == name.len() && i < b.len() {
        return Err(format!(
            "unexpected {} in metric name `{}`",
            near(&line[i..]),
            clip(name)
        ));
    }
    let (value, next) = word(line, i);
    if value.is_empty() {
        return Err(format!("`{}` has no value", clip(name)));
    }
    let value: f64 = value
        .parse()
        .map_err(|_| format!("value {} is not a number", near(value)))?;
    let mut i = skip_ws(b, next);
    let comment = |i: usize| b.get(i) == Some(&b'#');
    let mut ts = None;
    if i < b.len() && !comment(i) {
        let (t, next) = word(line, i);
        ts = Some(if openmetrics {
            om_timestamp(t)
        } else {
            prom_timestamp(t)
        }?);
        i = skip_ws(b, next);
    }
    // An exemplar is a trace reference: not kept.
    if i < b.len() && !(openmetrics && comment(i)) {
        let hint = if comment(i) {
            " (exemplars are OpenMetrics only)"
        } else {
            ""
        };
        return Err(format!(
            "unexpected {} after the sample{hint}",
            near(&line[i..])
        ));
    }
    Ok(Sample { name, value, ts })
}

/// Reads `name="value", …}` from `i`; returns the position after the `}`.
fn parse_labels<'t>(
    line: &'t str,
    mut i: usize,
    labels: &mut Vec<Label<'t>>,
) -> Result<usize, String> {
    let b = line.as_bytes();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b'}') => return Ok(i + 1),
            None => return Err("label set without its closing `}`".into()),
            _ => {}
        }
        let start = i;
        while i < b.len() && is_name_byte(b[i], i == start, false) {
            i += 1;
        }
        if i == start {
            return Err(format!("expected a label name, found {}", near(&line[i..])));
        }
        let key = &line[start..i];
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(format!(
                "expected `=` after label `{key}`, found {}",
                near(&line[i..])
            ));
        }
        i = skip_ws(b, i + 1);
        if b.get(i) != Some(&b'"') {
            return Err(format!(
                "label `{key}`: expected a quoted value, found {}",
                near(&line[i..])
            ));
        }
        let (value, next) = label_value(line, i + 1)
            .ok_or_else(|| format!("label `{key}`: value without its closing `\"`"))?;
        labels.push((key, value));
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => {
                return Err(format!(
                    "expected `,` or `}}` after label `{key}`, found {}",
                    near(&line[i..])
                ))
            }
        }
    }
}

/// The value of a label from just after its opening quote, unescaped, and the
/// position after its closing quote. Borrowed unless it has escapes; unknown
/// escapes are kept as written, as Prometheus does.
fn label_value(line: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = line.as_bytes();
    let mut owned: Option<String> = None;
    let (mut seg, mut i) = (start, start);
    loop {
        i += memchr::memchr2(b'"', b'\\', &b[i..])?;
        if b[i] == b'"' {
            let v = match owned {
                None => Cow::Borrowed(&line[start..i]),
                Some(mut o) => {
                    o.push_str(&line[seg..i]);
                    Cow::Owned(o)
                }
            };
            return Some((v, i + 1));
        }
        let o = owned.get_or_insert_with(String::new);
        o.push_str(&line[seg..i]);
        match b.get(i + 1)? {
            b'\\' => o.push('\\'),
            b'"' => o.push('"'),
            b'n' => o.push('\n'),
            _ => {
                o.push('\\');
                i += 1;
                seg = i;
                continue;
            }
        }
        i += 2;
        seg = i;
    }
}

/// 0.0.4: integer milliseconds.
fn prom_timestamp(t: &str) -> Result<i64, String> {
    let ms: i64 = t
        .parse()
        .map_err(|_| format!("timestamp {} is not integer milliseconds", near(t)))?;
    ms.checked_mul(1_000_000)
        .ok_or_else(|| format!("timestamp {ms} ms is out of range"))
}

/// OpenMetrics: seconds, possibly fractional. Plain decimals are read exactly
/// (an f64 keeps only about a quarter of a microsecond of today's epoch
/// seconds); exponent forms go through f64.
fn om_timestamp(t: &str) -> Result<i64, String> {
    let bad = || format!("timestamp {} is not a number of seconds", near(t));
    let out_of_range = || format!("timestamp {} is out of range", near(t));
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if !(int.is_empty() && frac.is_empty()) && all_digits(int) && all_digits(frac) {
        let secs: i64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| out_of_range())?
        };
        let mut nanos = 0i64;
        let mut scale = 100_000_000;
        for c in frac.bytes().take(9) {
            nanos += i64::from(c - b'0') * scale;
            scale /= 10;
        }
        let ns = secs
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(nanos))
            .ok_or_else(out_of_range)?;
        return Ok(if neg { -ns } else { ns });
    }
    let secs: f64 = t.parse().map_err(|_| bad())?;
    let ns = secs * 1e9;
    if !ns.is_finite() {
        return Err(bad());
    }
    if ns.abs() >= 9.2e18 {
        return Err(out_of_range());
    }
    Ok(ns as i64)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names, without `:` for labels.
fn is_name_byte(c: u8, first: bool, colon: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':') || (!first && c.is_ascii_digit())
}

fn is_metric_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .enumerate()
            .all(|(i, c)| is_name_byte(c, i == 0, true))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// The run of non-blanks at `i`, and the position after it.
fn word(line: &str, i: usize) -> (&str, usize) {
    let rest = &line[i..];
    let end = rest.find(WS).unwrap_or(rest.len());
    (&rest[..end], i + end)
}

/// The first word of `s` (after blanks) and what follows it.
fn token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches(WS);
    let end = s.find(WS).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// The start of `s`, for an error message.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The start of `s` quoted for an error message.
fn near(s: &str) -> String {
    if s.is_empty() {
        "nothing".into()
    } else if clip(s).len() < s.len() {
        format!("`{}…`", clip(s))
    } else {
        format!("`{s}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_layout::Metric;

    const NODE: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 2.5683715e+06
node_cpu_seconds_total{cpu="0",mode="user"} 51234.12
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.21
# HELP http_request_duration_seconds A histogram of request latencies.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/metrics",le="0.1"} 8
http_request_duration_seconds_bucket{handler="/metrics",le="+Inf"} 10
http_request_duration_seconds_bucket{handler="/metrics",le="0.5"} 9
http_request_duration_seconds_sum{handler="/metrics"} 1.75
http_request_duration_seconds_count{handler="/metrics"} 10
http_request_duration_seconds_bucket{handler="/",le="0.1"} 1
http_request_duration_seconds_bucket{handler="/",le="+Inf"} 1
http_request_duration_seconds_sum{handler="/"} 0.01
http_request_duration_seconds_count{handler="/"} 1
# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} 2.6e-05
go_gc_duration_seconds{quantile="0"} 1.1e-05
go_gc_duration_seconds{quantile="1"} NaN
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 351
untyped_thing{a="b"} -Inf 1700000000123
"#;

    const OM: &str = "# TYPE acme_http_router_request_seconds histogram\n\
# UNIT acme_http_router_request_seconds seconds\n\
acme_http_router_request_seconds_bucket{path=\"/api/v1\",le=\"0.1\"} 4 # {trace_id=\"KOO5S4vxi0o\"} 0.067 1520879607.789\n\
acme_http_router_request_seconds_bucket{path=\"/api/v1\",le=\"+Inf\"} 5 # {trace_id=\"oHg5SJYRHA0\"} 9.8\n\
acme_http_router_request_seconds_sum{path=\"/api/v1\"} 10.5\n\
acme_http_router_request_seconds_count{path=\"/api/v1\"} 5\n\
acme_http_router_request_seconds_created{path=\"/api/v1\"} 1520430000.123\n\
# TYPE process_cpu_seconds counter\n\
process_cpu_seconds_total{instance=\"inner\",job=\"j\",exported_job=\"x\"} 4.2e1 1520879607.789\n\
process_cpu_seconds_created 1520430000\n\
# TYPE build info\n\
build_info{version=\"1.\\\"2\\\"\\n\\\\x\\q\"} 1\n\
# TYPE state stateset\n\
state{state=\"up\"} 1\n\
# TYPE temp gauge\n\
temp 1.5e-3 15.5e1\n\
# EOF\n";

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn run(text: &str, om: bool, targets: &[(&str, &str)]) -> (BatchBuf, Parsed) {
        let mut b = BatchBuf::new();
        let p = parse(text.as_bytes(), om, NOW, targets, &mut b);
        (b, p)
    }

    fn metrics(b: &BatchBuf) -> Vec<(i64, Metric<'_>)> {
        b.iter()
            .map(|e| (e.timestamp(), e.metric().unwrap().unwrap()))
            .collect()
    }

    #[test]
    fn a_node_exporter_scrape() {
        let text = NODE;
        let (b, p) = run(text, false, &[]);
        assert_eq!((p.errors, p.series), (0, 7), "{:?}", p.first_errors);
        let m = metrics(&b);
        assert_eq!(m[0].1.name, "node_cpu_seconds_total");
        assert_eq!(m[0].1.kind, MetricKind::Counter);
        assert_eq!(m[0].1.labels, [("cpu", "0"), ("mode", "idle")]);
        assert_eq!(m[0].1.value, MetricValue::Single(2.5683715e6));
        assert_eq!(m[0].0, NOW);
        assert_eq!(
            (m[2].1.name, m[2].1.kind),
            ("node_load1", MetricKind::Gauge)
        );
        let h = &m[3].1;
        assert_eq!(
            (h.name, h.kind),
            ("http_request_duration_seconds", MetricKind::Histogram)
        );
        assert_eq!(h.labels, [("handler", "/metrics")]);
        assert_eq!(
            h.value,
            MetricValue::Histogram {
                count: 10,
                sum: 1.75,
                buckets: vec![(0.1, 8), (0.5, 9), (f64::INFINITY, 10)]
            }
        );
        assert_eq!(m[4].1.labels, [("handler", "/")]);
        let s = &m[5].1;
        assert_eq!(
            (s.name, s.kind),
            ("go_gc_duration_seconds", MetricKind::Summary)
        );
        let MetricValue::Summary {
            count,
            sum,
            quantiles,
        } = &s.value
        else {
            panic!()
        };
        assert_eq!((*count, *sum), (351, 0.0123));
        assert_eq!(quantiles[..2], [(0.0, 1.1e-05), (0.5, 2.6e-05)]);
        assert!(quantiles[2].0 == 1.0 && quantiles[2].1.is_nan());
        let u = &m[6];
        assert_eq!((u.1.name, u.1.kind), ("untyped_thing", MetricKind::Gauge));
        assert_eq!(u.1.value, MetricValue::Single(f64::NEG_INFINITY));
        assert_eq!(u.0, 1_700_000_000_123_000_000);
    }

    #[test]
    fn openmetrics_with_eof_created_exemplars_escapes_and_target_labels() {
        let text = OM;
        let targets = [("instance", "h:9100"), ("job", "node")];
        let (b, p) = run(text, true, &targets);
        assert_eq!((p.errors, p.series), (0, 5), "{:?}", p.first_errors);
        let m = metrics(&b);
        let h = &m[0].1;
        assert_eq!(
            h.labels,
            [("instance", "h:9100"), ("job", "node"), ("path", "/api/v1")]
        );
        assert_eq!(
            h.value,
            MetricValue::Histogram {
                count: 5,
                sum: 10.5,
                buckets: vec![(0.1, 4), (f64::INFINITY, 5)]
            }
        );
        let c = &m[1];
        assert_eq!(
            (c.1.name, c.1.kind),
            ("process_cpu_seconds_total", MetricKind::Counter)
        );
        assert_eq!(c.0, 1_520_879_607_789_000_000, "exact float seconds");
        assert_eq!(c.1.value, MetricValue::Single(42.0));
        assert_eq!(
            c.1.labels,
            [
                ("exported_exported_job", "j"),
                ("exported_instance", "inner"),
                ("exported_job", "x"),
                ("instance", "h:9100"),
                ("job", "node"),
            ]
        );
        assert_eq!(
            (m[2].1.name, m[2].1.kind),
            ("build_info", MetricKind::Gauge)
        );
        assert_eq!(m[2].1.labels[2], ("version", "1.\"2\"\n\\x\\q"));
        assert_eq!((m[3].1.name, m[3].1.labels[2]), ("state", ("state", "up")));
        assert_eq!(
            (m[4].0, &m[4].1.value),
            (155_000_000_000, &MetricValue::Single(0.0015))
        );
    }

    #[test]
    fn bad_lines_are_counted_and_their_neighbours_kept() {
        let mut text = b"ok_a 1\n\
bad{a=\"1\",a=\"2\"} 1\n\
bad{a=\"1} 1\n\
bad 1 1.5\n\
ok_b{x=\"y\",} 2\n\
bad notanumber\n\
bad-name 1\n\
ok_c 3 # {trace=\"x\"} 1\n\
# TYPE h histogram\n\
h_bucket{le=\"x\"} 1\n\
h_bucket 1\n\
h_bucket{le=\"1\"} -1\n\
h_bucket{le=\"1\"} 2\n\
h_bucket{le=\"1\"} 3\n\
h_count 2\n\
h_count 2\n"
            .to_vec();
        text.extend(b"ok_d\xff 4\n");
        text.extend(b"ok_e 5\r\n");
        let mut b = BatchBuf::new();
        let p = parse(&text, false, NOW, &[], &mut b);
        let names: Vec<_> = metrics(&b).into_iter().map(|(_, m)| m.name).collect();
        assert_eq!(names, ["ok_a", "ok_b", "h", "ok_e"]);
        assert_eq!(p.errors, 12, "{:#?}", p.first_errors);
        assert_eq!(p.first_errors.len(), MAX_KEPT_ERRORS);
        assert_eq!(p.first_errors[0], "line 2: duplicate label `a`");
        assert_eq!(
            p.first_errors[1],
            "line 3: label `a`: value without its closing `\"`"
        );
        assert_eq!(
            p.first_errors[2],
            "line 4: timestamp `1.5` is not integer milliseconds"
        );
        assert_eq!(
            p.first_errors[3],
            "line 6: value `notanumber` is not a number"
        );
        assert_eq!(
            p.first_errors[4],
            "line 7: unexpected `-name 1` in metric name `bad`"
        );
        assert_eq!(
            p.first_errors[5],
            "line 8: unexpected `# {trace=\"x\"} 1` after the sample (exemplars are OpenMetrics only)"
        );
        assert_eq!(p.first_errors[6], "line 10: `le` label `x` is not a number");
        assert_eq!(
            p.first_errors[7],
            "line 11: `h` sample without a `le` label"
        );
        assert_eq!(
            p.first_errors[8],
            "line 12: count -1 is not a finite non-negative number"
        );
        assert_eq!(
            p.first_errors[9],
            "line 16: second count for the same `h` series"
        );
        let h = b.get(2).unwrap().metric().unwrap().unwrap();
        let MetricValue::Histogram {
            count,
            sum,
            buckets,
        } = h.value
        else {
            panic!()
        };
        assert_eq!((count, buckets), (2, vec![(1.0, 2), (f64::INFINITY, 2)]));
        assert!(sum.is_nan(), "no `_sum`: unknown, not zero");
    }

    #[test]
    fn openmetrics_wants_its_eof_last() {
        let (b, p) = run("a 1\nb 2 1.5\n", true, &[]);
        assert_eq!(b.len(), 2);
        assert_eq!(
            p.first_errors,
            ["line 2: no `# EOF` at the end: the exposition may be truncated"]
        );
        assert_eq!(b.get(1).unwrap().timestamp(), 1_500_000_000);
        let (b, p) = run("a 1\n# EOF\n\nb 2\n", true, &[]);
        assert_eq!(b.len(), 1);
        assert_eq!(p.first_errors, ["line 4: text after `# EOF`"]);
        let (_, p) = run("a 1 x\na 1 1e400\n# EOF", true, &[]);
        assert_eq!(
            p.first_errors,
            [
                "line 1: timestamp `x` is not a number of seconds",
                "line 2: timestamp `1e400` is not a number of seconds"
            ]
        );
        // In 0.0.4, `# EOF` is a comment like any other.
        let (b, p) = run("a 1\n# EOF\nb 2\n", false, &[]);
        assert_eq!((b.len(), p.errors), (2, 0));
    }

    #[test]
    fn any_input_is_parsed_without_panicking() {
        let targets = [("instance", "i"), ("job", "j")];
        // Each format's own sample gets the mutations.
        for (text, om) in [(NODE.as_bytes(), false), (OM.as_bytes(), true)] {
            for cut in 0..text.len() {
                parse(&text[..cut], om, NOW, &targets, &mut BatchBuf::new());
                parse(&text[..cut], !om, NOW, &targets, &mut BatchBuf::new());
            }
            for i in 0..text.len() {
                for x in [b'"', b'\\', b'{', b'}', b'#', b' ', b'\n', 0xff] {
                    let mut bad = text.to_vec();
                    bad[i] = x;
                    let mut b = BatchBuf::new();
                    let p = parse(&bad, om, NOW, &targets, &mut b);
                    assert_eq!(p.series, b.len());
                    BatchBuf::from_bytes(b.into_bytes()).unwrap();
                }
            }
        }
    }
}
