//! Record audit events with `tracing` macros: a [`Layer`] that appends the
//! events of one target (`"audit"` unless told otherwise) to an
//! [`AuditLog`], and lets every other event pass by.
//!
//! ```
//! use std::sync::Arc;
//! use auditlog::{AuditLog, AuditOptions, Catalog, Filter};
//! use auditlog_tracing::AuditLayer;
//! use tracing_subscriber::prelude::*;
//!
//! let dir = tempfile::tempdir()?;
//! let opts = AuditOptions { catalog: Catalog::builtin("filetransfer-2.0"), ..Default::default() };
//! let log = Arc::new(AuditLog::open(dir.path(), opts)?);
//! let layer = AuditLayer::new(log.clone());
//! let health = layer.health();
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::warn!(
//!         target: "audit",
//!         event_type = "USER_AUTH_FAILED_WRONG_PASSWORD",
//!         actor = "alice",
//!         ip = "203.0.113.66",
//!         result = 1,
//!         "wrong password"
//!     );
//!     tracing::info!("not an audit event: passed by");
//! });
//! assert_eq!(health.recorded(), 1);
//! let (_, e) = log.query(&Filter::default(), false).next().unwrap()?;
//! assert_eq!(e.actor.as_deref(), Some("alice"));
//! assert_eq!(e.attrs["message"], "wrong password");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Fields: `event_type` (required; an event without it is counted as
//! refused), and `severity`, `source`, `ip`, `actor_id`, `actor`,
//! `actor_account`, `account_id`, `session`, `entity_type`, `entity_id`,
//! `entity_name`, `result` (an integer), `data` set the event's fields of
//! those names; every other field, the message included, becomes an
//! attribute. Without a `severity` field the level decides: ERROR is ERROR,
//! WARN is WARNING, INFO is INFO, DEBUG and TRACE are DEBUG. The time is the
//! moment the macro ran.
//!
//! Appends happen in the macro's thread with the log's durability: with
//! `Durability::Sync` (the default) the macro returns once the event is on
//! disk. A layer cannot return an error to the macro: what fails is counted
//! by [`Health`] and passed to the error handler (by default, written to
//! standard error), never dropped silently.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use auditlog::{AuditLog, Event, Severity, Timestamp};
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// What happens to an event that could not be recorded.
pub type ErrorHandler = Arc<dyn Fn(&Refusal) + Send + Sync>;

/// An audit event that was not recorded, and why.
#[derive(Debug)]
pub struct Refusal {
    /// The event as far as it was built (`None` when it had no `event_type`).
    pub event: Option<Box<Event>>,
    /// Why: the log's error, or what the fields lacked.
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event {
            Some(e) => write!(f, "audit event {} not recorded: {}", e.event_type, self.why),
            None => write!(f, "audit event not recorded: {}", self.why),
        }
    }
}

/// Counts of what the layer recorded and refused, shared with the layer.
#[derive(Debug, Default)]
pub struct Health {
    recorded: AtomicU64,
    refused: AtomicU64,
    last: Mutex<Option<String>>,
}

impl Health {
    /// Events appended to the log.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Events of the audit target that were not: no `event_type`, a bad
    /// field, or an error from the log.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Why the last refused event was refused.
    pub fn last_refusal(&self) -> Option<String> {
        self.last.lock().ok().and_then(|g| g.clone())
    }
}

/// The layer: appends the events of its target to an [`AuditLog`].
pub struct AuditLayer {
    log: Arc<AuditLog>,
    target: String,
    health: Arc<Health>,
    on_error: ErrorHandler,
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("target", &self.target)
            .field("health", &self.health)
            .finish()
    }
}

impl AuditLayer {
    /// A layer appending the events of target `"audit"` to `log`.
    pub fn new(log: Arc<AuditLog>) -> AuditLayer {
        AuditLayer {
            log,
            target: "audit".into(),
            health: Arc::default(),
            on_error: Arc::new(|r: &Refusal| eprintln!("auditlog-tracing: {r}")),
        }
    }

    /// Records the events of `target` instead (exactly that target).
    pub fn with_target(mut self, target: impl Into<String>) -> AuditLayer {
        self.target = target.into();
        self
    }

    /// Calls `handler` for each event that could not be recorded (instead
    /// of writing it to standard error).
    pub fn with_error_handler(
        mut self,
        handler: impl Fn(&Refusal) + Send + Sync + 'static,
    ) -> AuditLayer {
        self.on_error = Arc::new(handler);
        self
    }

    /// The counts of what was recorded and refused.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    fn refuse(&self, r: Refusal) {
        self.health.refused.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.health.last.lock() {
            *last = Some(r.to_string());
        }
        (self.on_error)(&r);
    }
}

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != self.target {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        match fields.into_event(*meta.level()) {
            Ok(e) => match self.log.append(&e) {
                Ok(_) => {
                    self.health.recorded.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => self.refuse(Refusal {
                    event: Some(Box::new(e)),
                    why: error_chain(&err),
                }),
            },
            Err(r) => self.refuse(r),
        }
    }
}

/// `e` and each of its causes, once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The fields of one tracing event, as they are visited.
#[derive(Default)]
struct Fields {
    event_type: Option<String>,
    severity: Option<String>,
    text: Vec<(&'static str, String)>,
    result: Option<Result<i64, String>>,
    attrs: Vec<(String, String)>,
}

/// The event fields set by a tracing field of the same name (a `time`
/// field is an attribute like any other: the time is the macro's moment).
const TEXT_FIELDS: [&str; 11] = [
    "source",
    "ip",
    "actor_id",
    "actor",
    "actor_account",
    "account_id",
    "session",
    "entity_type",
    "entity_id",
    "entity_name",
    "data",
];

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "event_type" => self.event_type = Some(value),
            "severity" => self.severity = Some(value),
            "result" => self.result = Some(value.parse().map_err(|_| value)),
            name => match TEXT_FIELDS.iter().find(|f| **f == name) {
                Some(f) => self.text.push((f, value)),
                None => self.attrs.push((name.to_string(), value)),
            },
        }
    }

    fn into_event(self, level: Level) -> Result<Event, Refusal> {
        let refuse = |event: Option<Box<Event>>, why: String| Refusal { event, why };
        let Some(event_type) = self.event_type else {
            return Err(refuse(None, "no `event_type` field".into()));
        };
        let severity = match &self.severity {
            Some(s) => s
                .parse::<Severity>()
                .map_err(|e| refuse(None, format!("{event_type}: field `severity`: {e}")))?,
            None => match level {
                Level::ERROR => Severity::Error,
                Level::WARN => Severity::Warning,
                Level::INFO => Severity::Info,
                _ => Severity::Debug,
            },
        };
        let mut e = Event::new(Timestamp::now(), event_type, severity);
        for (name, value) in self.text {
            let slot = match name {
                "source" => &mut e.source,
                "actor_id" => &mut e.actor_id,
                "actor" => &mut e.actor,
                "actor_account" => &mut e.actor_account,
                "account_id" => &mut e.account_id,
                "session" => &mut e.session,
                "entity_type" => &mut e.entity_type,
                "entity_id" => &mut e.entity_id,
                "entity_name" => &mut e.entity_name,
                "data" => &mut e.data,
                "ip" => {
                    e.ip = Some(value.parse().map_err(|_| Refusal {
                        why: format!("field `ip`: {value:?} is not an IPv4 or IPv6 address"),
                        event: Some(Box::new(e.clone())),
                    })?);
                    continue;
                }
                _ => unreachable!("TEXT_FIELDS names only these"),
            };
            *slot = Some(value);
        }
        if let Some(r) = self.result {
            e.result = Some(r.map_err(|v| Refusal {
                why: format!("field `result`: {v:?} is not an integer"),
                event: Some(Box::new(e.clone())),
            })?);
        }
        e.attrs.extend(self.attrs);
        Ok(e)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.to_string());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}
