//! The `prometheus_scrape` source: pulls `/metrics` from each target every
//! interval, as Prometheus does, and turns each series into a metric event
//! labelled with the target's `instance` and the source's `job`.
//!
//! Like Prometheus, every scrape also yields `up` (1 or 0),
//! `scrape_duration_seconds` and `scrape_samples_scraped`, so a target that
//! is down is a series a query or an alert can see, not only a log line.

use super::component::{BuildContext, Job, Source};
use super::net::{self, Net};
use super::Batcher;
use crate::config::PrometheusScrapeSource;
use crate::topology::Shutdown;
use crate::topology::Stats;
use std::time::{Duration, Instant};
use weir_layout::{BatchBuf, MetricKind, MetricValue};

/// What Prometheus asks for: OpenMetrics first, the classic text format else.
const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One target: its URL and the labels every series of it gets.
struct Target {
    url: String,
    instance: String,
}

impl Source for PrometheusScrapeSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        let interval = cx.positive_duration("interval", &self.interval);
        let timeout = cx.positive_duration("timeout", &self.timeout).min(interval);
        if self.targets.is_empty() {
            cx.problem("targets", "no targets to scrape");
        }
        let base = cx.pipeline.base_dir();
        let tls = match self.tls.as_ref().map(|t| t.resolved(base).client()) {
            Some(Err((key, what))) => {
                cx.problem("tls", format!("{key}: {what}"));
                None
            }
            loaded => loaded.and_then(Result::ok),
        };
        let (net, cfg) = (out.into_net(cx.name, shutdown), self.clone());
        Some(Box::new(move || run(net, &cfg, interval, timeout, tls)))
    }
}

pub fn run(
    net: Net,
    cfg: &PrometheusScrapeSource,
    interval: Duration,
    timeout: Duration,
    tls: Option<crate::tls::ClientTls>,
) {
    let job = cfg.job.clone().unwrap_or_else(|| net.name.to_string());
    let targets: Vec<Target> = cfg
        .targets
        .iter()
        .map(|url| Target {
            instance: instance_of(url),
            url: url.clone(),
        })
        .collect();
    let runner = net.clone();
    runner.block_on(async move {
        crate::install_tls_provider();
        let builder = match &tls {
            Some(tls) => tls.apply(reqwest::Client::builder()),
            None => reqwest::Client::builder(),
        };
        let client = match builder
            .timeout(timeout)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(source = %net.name, "no HTTP client: {e}");
                return net.shutdown.trigger();
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = net.stopped() => return,
                _ = tick.tick() => {}
            }
            let mut scrapes = tokio::task::JoinSet::new();
            for (i, t) in targets.iter().enumerate() {
                let (client, url, max) = (client.clone(), t.url.clone(), cfg.max_bytes);
                scrapes.spawn(async move { (i, fetch(&client, &url, max, timeout).await) });
            }
            let mut batch = BatchBuf::new();
            while let Some(Ok((i, fetched))) = scrapes.join_next().await {
                scrape_into(&net, &targets[i], &job, fetched, &mut batch);
            }
            if net.send(batch).await.is_err() {
                return;
            }
        }
    });
}

/// A scrape's body, or why there is none, and how long it took.
struct Fetched {
    result: Result<(Vec<u8>, bool), String>,
    took: Duration,
    at_ns: i64,
}

async fn fetch(client: &reqwest::Client, url: &str, max: usize, timeout: Duration) -> Fetched {
    let at_ns = crate::codec::timestamp::now_ns();
    let started = Instant::now();
    let result = async {
        let mut resp = client
            .get(url)
            .header("Accept", ACCEPT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                timeout.as_secs_f64().to_string(),
            )
            .send()
            .await
            .map_err(|e| net::error_chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let openmetrics = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/openmetrics-text"));
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| net::error_chain(&e))? {
            if body.len() + chunk.len() > max {
                return Err(format!("response larger than max_bytes ({max})"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, openmetrics))
    }
    .await;
    Fetched {
        result,
        took: started.elapsed(),
        at_ns,
    }
}

/// The series of one scrape, then `up` and the scrape's own gauges.
fn scrape_into(net: &Net, target: &Target, job: &str, fetched: Fetched, batch: &mut BatchBuf) {
    let labels = [("instance", target.instance.as_str()), ("job", job)];
    let (up, samples) = match &fetched.result {
        Ok((body, openmetrics)) => {
            let parsed =
                crate::codec::prom_text::parse(body, *openmetrics, fetched.at_ns, &labels, batch);
            if parsed.errors > 0 {
                let first = parsed.first_errors.first().map_or("", String::as_str);
                net.bad_input(
                    "bad_exposition",
                    &target.url,
                    &format!("{} lines did not parse; first: {first}", parsed.errors),
                );
            }
            (1.0, parsed.series)
        }
        Err(e) => {
            Stats::add(&net.stats().errors, 1);
            net.stats().count_reason("scrape_failed", 1);
            tracing::warn!(source = %net.name, target = %target.url, "scrape failed: {e}");
            (0.0, 0)
        }
    };
    for (name, value) in [
        ("up", up),
        ("scrape_duration_seconds", fetched.took.as_secs_f64()),
        ("scrape_samples_scraped", samples as f64),
    ] {
        let single = MetricValue::Single(value);
        let _ = batch.push_metric(fetched.at_ns, name, MetricKind::Gauge, &labels, &single);
    }
}

/// `host:port` of a URL, as Prometheus labels a target's `instance`.
fn instance_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    authority.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_is_the_targets_authority() {
        assert_eq!(instance_of("http://10.0.0.5:9100/metrics"), "10.0.0.5:9100");
        assert_eq!(instance_of("https://u:p@node:9100/m?x=1"), "node:9100");
        assert_eq!(instance_of("node:9100"), "node:9100");
    }
}
