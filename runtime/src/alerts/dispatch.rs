//! The dispatcher: Alertmanager's notification pipeline on the wall clock.
//!
//! Each alert that fires or resolves is routed, and joins the group of
//! each route node that takes it (the node's receiver and the values of
//! its `group_by` labels). A new group waits `group_wait` to collect
//! alerts, then notifies; after that it looks again every
//! `group_interval`, and notifies when an alert fired that was not in the
//! last notification, when alerts it reported resolved (if the receiver
//! sends resolved), or when `repeat_interval` has passed. Silenced alerts
//! are left out. What each group last sent is saved, so a restart does
//! not send it again.

use super::alert::{Alert, State};
use super::matcher::Labels;
use super::notification::Notification;
use super::receivers::{self, Receiver};
use super::route::Route;
use super::state::Sent;
use super::{lock, Hub};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How often changed state is written.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// At shutdown, how long notifications still due may take.
const LAST_CALL: Duration = Duration::from_secs(30);

struct Group {
    /// The receiver's name and the group's key.
    id: String,
    receiver: Arc<Receiver>,
    labels: Labels,
    group_interval: Duration,
    repeat_interval: Duration,
    alerts: BTreeMap<String, Alert>,
}

type Groups = Arc<Mutex<HashMap<String, Arc<Mutex<Group>>>>>;

pub fn spawn(
    hub: Arc<Hub>,
    rx: mpsc::Receiver<Vec<Alert>>,
    seed: Vec<Alert>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the alert dispatcher's runtime starts");
            rt.block_on(run(hub, rx, seed));
        })
        .expect("spawn the alert dispatcher")
}

async fn run(hub: Arc<Hub>, mut rx: mpsc::Receiver<Vec<Alert>>, seed: Vec<Alert>) {
    let client = receivers::client();
    let groups: Groups = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let add = |alerts: Vec<Alert>, tasks: &mut tokio::task::JoinSet<()>| {
        for a in alerts {
            for node in hub.route.matching(&a.labels) {
                let group = join_group(&hub, &groups, node, &a);
                if let Some((id, g, wait)) = group {
                    let (hub, client, groups, stop) =
                        (hub.clone(), client.clone(), groups.clone(), stop_rx.clone());
                    tasks.spawn(group_loop(hub, client, groups, id, g, wait, stop));
                }
            }
        }
    };
    add(seed, &mut tasks);
    let mut save = tokio::time::interval(SAVE_EVERY);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(alerts) => add(alerts, &mut tasks),
                None => break,
            },
            _ = save.tick() => save_soon(&hub),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // The pipeline ended: every group sends what is due now.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(LAST_CALL, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::error!(
            "alert notifications still retrying after {LAST_CALL:?} at shutdown were abandoned"
        );
    }
    hub.save_if_dirty();
}

/// Saves the state off the dispatcher's thread: a slow fsync must not hold
/// up notifications.
fn save_soon(hub: &Arc<Hub>) {
    if hub.dirty.load(Ordering::Acquire) {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || hub.save_if_dirty());
    }
}

/// Puts `a` in its group under `node`; a new group is returned, to start.
fn join_group(
    hub: &Hub,
    groups: &Groups,
    node: &Route,
    a: &Alert,
) -> Option<(String, Arc<Mutex<Group>>, Duration)> {
    let (key, labels) = node.group(&a.labels);
    let id = format!("{}/{key}", node.receiver);
    let mut all = lock(groups);
    if let Some(g) = all.get(&id) {
        lock(g).alerts.insert(a.fingerprint.clone(), a.clone());
        return None;
    }
    let receiver = hub.receivers.get(&node.receiver)?.clone();
    let mut alerts = BTreeMap::new();
    alerts.insert(a.fingerprint.clone(), a.clone());
    let g = Arc::new(Mutex::new(Group {
        id: id.clone(),
        receiver,
        labels,
        group_interval: node.group_interval,
        repeat_interval: node.repeat_interval,
        alerts,
    }));
    all.insert(id.clone(), g.clone());
    Some((id, g, node.group_wait))
}

async fn group_loop(
    hub: Arc<Hub>,
    client: reqwest::Client,
    groups: Groups,
    id: String,
    group: Arc<Mutex<Group>>,
    wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = Instant::now() + wait;
    loop {
        if !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => {}
            }
        }
        let stopping = *stop.borrow();
        flush(&hub, &client, &group).await;
        let interval = lock(&group).group_interval;
        next = Instant::now() + interval;
        let mut all = lock(&groups);
        if stopping || lock(&group).alerts.is_empty() {
            all.remove(&id);
            return;
        }
    }
}

/// Notifies the group's receiver if anything is due.
async fn flush(hub: &Arc<Hub>, client: &reqwest::Client, group: &Mutex<Group>) {
    let now = super::silence::now_ms();
    let (id, receiver, labels, repeat, firing, resolved) = {
        let g = lock(group);
        let silences = lock(&hub.silences);
        let firing: Vec<Alert> = g
            .alerts
            .values()
            .filter(|a| a.state == State::Firing && !silences.mutes(&a.labels, now))
            .cloned()
            .collect();
        let resolved: Vec<Alert> = g
            .alerts
            .values()
            .filter(|a| a.state == State::Resolved)
            .cloned()
            .collect();
        (
            g.id.clone(),
            g.receiver.clone(),
            g.labels.clone(),
            g.repeat_interval,
            firing,
            resolved,
        )
    };
    let last = lock(&hub.notified).get(&id).cloned().unwrap_or_default();
    let firing_now: BTreeSet<String> = firing.iter().map(|a| a.fingerprint.clone()).collect();
    let resolved_ids: BTreeSet<String> = resolved.iter().map(|a| a.fingerprint.clone()).collect();
    // Only alerts that were reported firing are reported resolved.
    let resolved: Vec<Alert> = resolved
        .into_iter()
        .filter(|a| receiver.send_resolved && last.firing.contains(&a.fingerprint))
        .collect();
    let new_firing = !firing_now.is_subset(&last.firing);
    let repeat_due =
        !firing_now.is_empty() && now.saturating_sub(last.at_ms) >= repeat.as_millis() as i64;
    if new_firing || repeat_due || !resolved.is_empty() {
        let n = Notification {
            receiver: receiver.name.clone(),
            group_key: id.clone(),
            group_labels: labels,
            firing,
            resolved,
        };
        match receiver.deliver(client, &n).await {
            Ok(()) => {
                tracing::info!(receiver = %receiver.name, "sent {}", n.title());
                hub.sent.fetch_add(1, Ordering::Relaxed);
                let sent = Sent {
                    firing: firing_now,
                    at_ms: now,
                };
                lock(&hub.notified).insert(id, sent);
                hub.dirty.store(true, Ordering::Release);
                save_soon(hub);
            }
            Err(e) => {
                // Resolved alerts stay for the next turn to report.
                tracing::error!(receiver = %receiver.name, "notification {} not delivered: {e}", n.title());
                hub.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    } else if firing_now != last.firing && !last.firing.is_empty() {
        // Fewer alerts firing and nothing to say: remember, so one that
        // fires again is news.
        let mut all = lock(&hub.notified);
        if let Some(s) = all.get_mut(&id) {
            s.firing = firing_now;
        }
        hub.dirty.store(true, Ordering::Release);
    }
    // Resolved alerts are done with once handled (unless they fired again
    // meanwhile).
    lock(group)
        .alerts
        .retain(|fp, a| !(a.state == State::Resolved && resolved_ids.contains(fp)));
}
