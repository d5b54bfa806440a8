//! Alerts: rules over the rows of queries, and notifications about them.
//!
//! ```text
//! query rows --> rules (rule.rs: pending -> firing -> resolved, in event time)
//!            --> dispatcher (dispatch.rs: route, group, wait, repeat, silence)
//!            --> receivers (Slack, webhook, stdout, file)
//! ```
//!
//! Rules run on the query's thread as each window closes: a condition is
//! one DataFusion expression over the window's rows. What changed goes to
//! the dispatcher, which follows Alertmanager's model on the wall clock.
//! The [`Hub`] holds what both sides and the admin API share; its state
//! (alert states, what was notified, silences) is saved under the data
//! directory and read back at start, so a restart neither re-pages nor
//! forgets a pending alert.

pub mod alert;
mod dispatch;
pub mod matcher;
mod notification;
mod receivers;
mod route;
pub mod rule;
pub mod silence;
mod state;
mod template;

use crate::codec::timestamp::to_rfc3339 as rfc3339;
use crate::config::{AlertRule, Pipeline, Problem};
use alert::{Alert, State};
use matcher::Labels;
use receivers::Receiver;
use route::Route;
use rule::{Rule, RuleSet, RuleSpec};
use serde::Serialize;
use silence::{Silence, Silences};
use state::{Saved, Sent};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use template::Templates;
use tokio::sync::mpsc;
use weir_sql::Query;

/// Alert changes in flight from rules to the dispatcher, in batches.
const UPDATES: usize = 256;

/// What rules, the dispatcher and the admin API share.
pub struct Hub {
    /// The rules of each query.
    books: BTreeMap<String, Arc<Mutex<RuleSet>>>,
    route: Route,
    receivers: HashMap<String, Arc<Receiver>>,
    silences: Mutex<Silences>,
    notified: Mutex<BTreeMap<String, Sent>>,
    /// Something worth saving changed.
    dirty: AtomicBool,
    /// One writer of the state file at a time.
    saving: Mutex<()>,
    state_path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Vec<Alert>>>>,
    rx: Mutex<Option<mpsc::Receiver<Vec<Alert>>>>,
    dispatcher: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn duration(p: &Pipeline, name: &str, key: &str, text: &str) -> Result<i64, Problem> {
    weir_sql::parse_duration(text).map_err(|e| p.problem("alerts", name, Some(key), e))
}

/// Builds the rules, routes and receivers of `p`, or lists what is wrong;
/// `None` when the pipeline has no alerts. Nothing starts yet.
pub fn build(p: &Pipeline) -> Result<Option<Arc<Hub>>, Vec<Problem>> {
    let f = &p.file;
    let mut problems = Vec::new();
    let (receivers, route) = routing(p, &mut problems);
    if f.alerts.is_empty() {
        if f.route.is_some() || !f.receivers.is_empty() {
            tracing::warn!("[route] and [receivers] are set but there are no [alerts.*] rules");
        }
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    }
    let mut books: BTreeMap<String, RuleSet> = BTreeMap::new();
    for (name, a) in &f.alerts {
        match rule(p, name, a) {
            Ok(spec) => books
                .entry(a.query.clone())
                .or_insert_with(|| RuleSet {
                    rules: Vec::new(),
                    step: 0,
                })
                .rules
                .push(Rule::new(spec)),
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let data_dir = p.data_dir();
    let (tx, rx) = mpsc::channel(UPDATES);
    Ok(Some(Arc::new(Hub {
        books: books
            .into_iter()
            .map(|(q, b)| (q, Arc::new(Mutex::new(b))))
            .collect(),
        route: route.expect("no problems: a route"),
        receivers,
        silences: Mutex::default(),
        notified: Mutex::default(),
        dirty: AtomicBool::new(false),
        saving: Mutex::new(()),
        state_path: data_dir.join("alerts.json"),
        tx: Mutex::new(Some(tx)),
        rx: Mutex::new(Some(rx)),
        dispatcher: Mutex::new(None),
        sent: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    })))
}

/// One rule's spec, or what is wrong with it.
fn rule(p: &Pipeline, name: &str, a: &AlertRule) -> Result<RuleSpec, Vec<Problem>> {
    let f = &p.file;
    let mut problems = Vec::new();
    if !f.queries.contains_key(&a.query) {
        let hint = crate::config::closest(&a.query, f.queries.keys().map(String::as_str))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        problems.push(p.problem(
            "alerts",
            name,
            Some("query"),
            format!(
                "no query named `{}`{hint}; rules read the rows of a [queries.*]",
                a.query
            ),
        ));
        return Err(problems);
    }
    if let Err(e) = weir_sql::check_syntax(&a.condition) {
        problems.push(p.problem("alerts", name, Some("condition"), e.to_string()));
    }
    let durations = (
        duration(p, name, "for", &a.for_),
        duration(p, name, "keep_firing_for", &a.keep_firing_for),
        duration(p, name, "no_data_after", &a.no_data_after),
    );
    let (for_, keep_firing_for, no_data_after) = match durations {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (a, b, c) => {
            problems.extend([a.err(), b.err(), c.err()].into_iter().flatten());
            return Err(problems);
        }
    };
    let mut sources: Vec<(String, String)> = Vec::new();
    for (k, v) in [("summary", &a.summary), ("description", &a.description)] {
        if let Some(t) = v {
            sources.push((k.to_string(), t.clone()));
        }
    }
    sources.extend(a.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    let templates = match Templates::new(&sources) {
        Ok(t) => t,
        Err(e) => {
            let key = e.split(':').next().unwrap_or("summary").to_string();
            let key = if a.annotations.contains_key(&key) {
                "annotations".into()
            } else {
                key
            };
            problems.push(p.problem("alerts", name, Some(&key), e));
            return Err(problems);
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RuleSpec {
        name: name.to_string(),
        condition: a.condition.clone(),
        for_,
        keep_firing_for,
        no_data_after,
        labels: a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        templates,
    })
}

/// The receivers that build, and the routing tree over them.
fn routing(
    p: &Pipeline,
    problems: &mut Vec<Problem>,
) -> (HashMap<String, Arc<Receiver>>, Option<Route>) {
    let f = &p.file;
    let mut receivers = HashMap::new();
    for (name, r) in &f.receivers {
        match Receiver::new(name, r, |x| p.resolve(x)) {
            Ok(r) => {
                receivers.insert(name.clone(), Arc::new(r));
            }
            Err((key, msg)) => problems.push(p.problem("receivers", name, Some(&key), msg)),
        }
    }
    if f.alerts.is_empty() {
        return (receivers, None);
    }
    let only = (f.receivers.len() == 1)
        .then(|| f.receivers.keys().next().map(String::as_str))
        .flatten();
    let route = match (&f.route, f.receivers.is_empty()) {
        (_, true) => {
            problems.push(Problem::new(
                &p.path,
                p.locate("alerts", f.alerts.keys().next().expect("not empty"), None),
                "alerts need somewhere to go: add a [receivers.NAME] (type = \"slack\", \"webhook\", \"stdout\" or \"file\")".into(),
            ));
            None
        }
        (None, false) if only.is_none() => {
            problems.push(Problem::new(
                &p.path,
                None,
                "there are several [receivers.*]: add a [route] with the default `receiver`".into(),
            ));
            None
        }
        (cfg, false) => match Route::new(&cfg.clone().unwrap_or_default(), only) {
            Ok(r) => Some(r),
            Err((key, msg)) => {
                problems.push(route_problem(p, &key, msg));
                None
            }
        },
    };
    if let Some(r) = &route {
        for (id, name) in r.receivers() {
            if !receivers.contains_key(name) && f.receivers.get(name).is_none() {
                let hint = crate::config::closest(name, f.receivers.keys().map(String::as_str))
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                problems.push(route_problem(
                    p,
                    &format!("{id}.receiver"),
                    format!("no receiver named `{name}`{hint}"),
                ));
            }
        }
    }
    (receivers, route)
}

fn route_problem(p: &Pipeline, key: &str, msg: String) -> Problem {
    let line = p
        .text
        .lines()
        .position(|l| l.trim_start().starts_with("[route"))
        .map(|i| i + 1);
    Problem::new(&p.path, line, format!("[route] {key}: {msg}"))
}

/// A query's hook into its rules.
pub struct Evaluator {
    rules: Arc<Mutex<RuleSet>>,
    hub: Arc<Hub>,
    tx: mpsc::Sender<Vec<Alert>>,
}

impl Hub {
    /// The evaluator for the rules that read query `name`, if any; checks
    /// their conditions and templates against the query's columns when
    /// they are known (a declared schema), else when the first rows come.
    pub fn attach(
        self: &Arc<Self>,
        p: &Pipeline,
        name: &str,
        query: &Query,
    ) -> Result<Option<Evaluator>, Vec<Problem>> {
        let Some(book) = self.books.get(name) else {
            return Ok(None);
        };
        let Some(window) = query.window() else {
            let rules: Vec<String> = lock(book)
                .rules
                .iter()
                .map(|r| r.spec.name.clone())
                .collect();
            return Err(rules
                .iter()
                .map(|r| p.problem("alerts", r, Some("query"), format!(
                    "`{name}` has no window; rules read the rows of windowed queries (GROUP BY tumble(...), hop(...) or session(...))"
                )))
                .collect());
        };
        let mut problems = Vec::new();
        let mut set = lock(book);
        set.step = window.step();
        if let Some(schema) = query.output_schema() {
            let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            for r in &set.rules {
                if let Err(e) = weir_sql::Condition::new(&r.spec.condition, &schema) {
                    problems.push(p.problem(
                        "alerts",
                        &r.spec.name,
                        Some("condition"),
                        format!("{e} (the rows of `{name}` have: {})", columns.join(", ")),
                    ));
                }
                for (annotation, unknown) in r.spec.templates.unknown_names(&columns) {
                    problems.push(p.problem(
                        "alerts",
                        &r.spec.name,
                        Some(&annotation),
                        format!(
                            "`{unknown}` is not a column of `{name}` (there are: {}; and `labels`)",
                            columns.join(", ")
                        ),
                    ));
                }
            }
        }
        drop(set);
        if !problems.is_empty() {
            return Err(problems);
        }
        let tx = lock(&self.tx).clone().ok_or_else(Vec::new)?;
        Ok(Some(Evaluator {
            rules: book.clone(),
            hub: self.clone(),
            tx,
        }))
    }

    /// Reads the saved state back into the rules and starts the dispatcher.
    pub fn start(self: &Arc<Self>) {
        let saved = match Saved::load(&self.state_path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("alert state not restored: {e}; starting afresh");
                Saved::default()
            }
        };
        let mut seed = Vec::new();
        let mut restored = 0;
        for book in self.books.values() {
            let mut set = lock(book);
            for rule in &mut set.rules {
                if let Some(instances) = saved.rules.get(&rule.spec.name) {
                    for (key, inst) in instances {
                        if inst.alert.state != State::Pending {
                            seed.push(inst.alert.clone());
                        }
                        rule.instances.insert(key.clone(), inst.clone());
                        restored += 1;
                    }
                }
            }
        }
        *lock(&self.silences) = Silences(saved.silences);
        *lock(&self.notified) = saved.notified;
        if let Some(dir) = self.state_path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::error!("cannot create the data directory {}: {e}; alert state will not survive a restart", dir.display());
            }
        }
        tracing::info!(
            "alerts: {} rules, state in {} ({restored} alerts restored)",
            self.books
                .values()
                .map(|b| lock(b).rules.len())
                .sum::<usize>(),
            self.state_path.display()
        );
        let rx = lock(&self.rx).take().expect("a hub starts once");
        let handle = dispatch::spawn(self.clone(), rx, seed);
        *lock(&self.dispatcher) = Some(handle);
    }

    /// For `weir test`: rules run, nothing is ever notified or saved.
    pub fn without_notifications(&self) {
        lock(&self.rx).take();
    }

    /// The pipeline has ended: the dispatcher sends what is due, saves,
    /// and stops; this waits for it.
    pub fn close(&self) {
        lock(&self.tx).take();
        if let Some(h) = lock(&self.dispatcher).take() {
            let _ = h.join();
        }
    }

    /// Writes the state file if anything changed since the last write.
    fn save_if_dirty(&self) {
        let _one = lock(&self.saving);
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut saved = Saved {
            version: state::VERSION,
            ..Saved::default()
        };
        for book in self.books.values() {
            for rule in &lock(book).rules {
                let instances = rule
                    .instances
                    .iter()
                    .map(|(k, i)| (k.clone(), i.clone()))
                    .collect();
                saved.rules.insert(rule.spec.name.clone(), instances);
            }
        }
        saved.notified = lock(&self.notified).clone();
        saved.silences = lock(&self.silences).0.clone();
        if let Err(e) = saved.store(&self.state_path) {
            tracing::error!(
                "cannot save alert state to {}: {e}",
                self.state_path.display()
            );
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Every alert the rules hold, pending, firing or recently resolved.
    pub fn list(&self) -> Vec<AlertView> {
        let now = silence::now_ms();
        let silences = lock(&self.silences).clone();
        let mut out = Vec::new();
        for (query, book) in &self.books {
            for rule in &lock(book).rules {
                let mut alerts: Vec<&Alert> = rule.instances.values().map(|i| &i.alert).collect();
                alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
                for a in alerts {
                    out.push(AlertView {
                        alertname: a.name().to_string(),
                        query: query.clone(),
                        state: a.state,
                        silenced: a.state == State::Firing && silences.mutes(&a.labels, now),
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                        active_at: rfc3339(a.active_at),
                        fired_at: a.fired_at.map(rfc3339),
                        resolved_at: a.resolved_at.map(rfc3339),
                        fingerprint: a.fingerprint.clone(),
                    });
                }
            }
        }
        out
    }

    pub fn silences(&self) -> Vec<Silence> {
        lock(&self.silences).0.clone()
    }

    /// Adds a silence, saved at once; returns its id.
    pub fn silence(&self, s: Silence) -> String {
        let id = lock(&self.silences).add(s, silence::now_ms());
        self.dirty.store(true, Ordering::Release);
        self.save_if_dirty();
        id
    }

    pub fn expire_silence(&self, id: &str) -> bool {
        let found = lock(&self.silences).expire(id, silence::now_ms());
        if found {
            self.dirty.store(true, Ordering::Release);
            self.save_if_dirty();
        }
        found
    }
}

/// An alert as `GET /alerts` and `weir alerts list` show it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct AlertView {
    pub alertname: String,
    pub query: String,
    pub state: State,
    pub silenced: bool,
    pub labels: Labels,
    pub annotations: Labels,
    pub active_at: String,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    pub fingerprint: String,
}

impl Evaluator {
    /// Runs the rules over the rows `query` closed, each row's group named
    /// by the query's `GROUP BY` columns, then moves their clock to the
    /// watermark (`None` at the end of the input, where no later window is
    /// missing).
    pub fn observe(&self, query: &Query, rows: &[weir_sql::Rows], watermark: Option<i64>) {
        let keys = query.key_columns().unwrap_or_default();
        let mut changes = Vec::with_capacity(rows.len() + 1);
        {
            let mut set = lock(&self.rules);
            for r in rows {
                changes.push(set.eval(&r.batch, keys, r.window_end));
            }
            if let Some(wm) = watermark.filter(|&w| w != i64::MIN) {
                changes.push(set.advance(wm));
            }
        }
        // Sent without the rules' lock: the dispatcher takes it to save.
        for c in changes {
            self.apply(c);
        }
    }

    fn apply(&self, changes: rule::Changes) {
        if changes.dirty {
            self.hub.dirty.store(true, Ordering::Release);
        }
        if !changes.alerts.is_empty() {
            // Blocks when the dispatcher is behind: rules wait rather than
            // pile up changes.
            let _ = self.tx.blocking_send(changes.alerts);
        }
    }
}
