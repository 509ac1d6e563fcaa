//! The layer records what its target says, refuses what it cannot record
//! (counted and handed to the handler), and leaves other targets alone.

use std::sync::{Arc, Mutex};

use auditlog::{AuditLog, AuditOptions, Catalog, Filter, Severity};
use auditlog_tracing::AuditLayer;
use tracing_subscriber::prelude::*;

#[test]
fn fields_levels_targets_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let opts = AuditOptions {
        catalog: Catalog::builtin("filetransfer-2.0"),
        strict: true,
        ..Default::default()
    };
    let log = Arc::new(AuditLog::open(dir.path(), opts).unwrap());
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let seen = refusals.clone();
    let layer = AuditLayer::new(log.clone())
        .with_target("security")
        .with_error_handler(move |r| seen.lock().unwrap().push(r.to_string()));
    let health = layer.health();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "security", event_type = "USER_LOGGED_IN", actor = "alice",
            actor_id = 42, ip = "10.0.0.5", session = "s-1", result = 0, browser = "firefox",
            "logged in");
        tracing::error!(target: "security", event_type = "USER_AUTH_FAILED_ACCOUNT_LOCKED",
            actor = "bob", entity_type = "USER", entity_id = "7", entity_name = "bob",
            source = "WEB_USER", account_id = "3", actor_account = "BOB", data = "{}");
        tracing::debug!(target: "security", event_type = "PACKAGE_QUARANTINED",
            severity = "critical", result = 2);
        // Other targets pass by.
        tracing::error!(event_type = "USER_LOGGED_IN", "not for the audit log");
        tracing::info!(target: "securityx", event_type = "USER_LOGGED_IN");
        // Refused: no type, a bad address, a bad result, a type the strict catalog lacks.
        tracing::info!(target: "security", actor = "eve");
        tracing::info!(target: "security", event_type = "USER_LOGGED_IN", ip = "10.0.0.300");
        tracing::info!(target: "security", event_type = "USER_LOGGED_IN", result = "ok");
        tracing::info!(target: "security", event_type = "USER_LOGED_IN");
    });
    assert_eq!(health.recorded(), 3, "{:?}", refusals.lock().unwrap());
    assert_eq!(health.refused(), 4);
    let why = refusals.lock().unwrap().clone();
    assert!(why[0].contains("no `event_type`"), "{why:?}");
    assert!(why[1].contains("field `ip`"), "{why:?}");
    assert!(why[2].contains("field `result`"), "{why:?}");
    assert!(why[3].contains("did you mean USER_LOGGED_IN"), "{why:?}");
    assert_eq!(health.last_refusal().as_deref(), Some(why[3].as_str()));

    let events: Vec<_> = log
        .query(&Filter::default(), false)
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(events.len(), 3);
    let a = &events[0];
    assert_eq!(
        (a.event_type.as_str(), a.severity),
        ("USER_LOGGED_IN", Severity::Info)
    );
    assert_eq!(a.actor.as_deref(), Some("alice"));
    assert_eq!(a.actor_id.as_deref(), Some("42"));
    assert_eq!(a.ip, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(a.session.as_deref(), Some("s-1"));
    assert_eq!(a.result, Some(0));
    assert_eq!(a.attrs["browser"], "firefox");
    assert_eq!(a.attrs["message"], "logged in");
    let b = &events[1];
    assert_eq!(b.severity, Severity::Error);
    assert_eq!(
        (
            b.entity_type.as_deref(),
            b.entity_id.as_deref(),
            b.entity_name.as_deref()
        ),
        (Some("USER"), Some("7"), Some("bob"))
    );
    assert_eq!(
        (
            b.source.as_deref(),
            b.account_id.as_deref(),
            b.actor_account.as_deref(),
            b.data.as_deref()
        ),
        (Some("WEB_USER"), Some("3"), Some("BOB"), Some("{}"))
    );
    let c = &events[2];
    assert_eq!(
        (c.severity, c.result),
        (Severity::Critical, Some(2)),
        "severity field beats level"
    );
}
