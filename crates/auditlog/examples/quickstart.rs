//! The README's library section, compiled and run (`cargo run -p auditlog
//! --example quickstart`): open, follow in a thread, append from threads,
//! query with a filter, count in the engine.

use std::sync::Arc;
use std::time::Duration;

use auditlog::{AuditLog, AuditOptions, Catalog, Event, Filter, GroupBy, Severity, Timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // Open (or create) a log; the reference catalog gives default severities
    // (and, with `strict`, the only types accepted).
    let opts = AuditOptions {
        catalog: Catalog::builtin("filetransfer-2.0"),
        ..Default::default()
    };
    let log = Arc::new(AuditLog::open(dir.path().join("audit-log"), opts)?);

    // A follower owns what it needs: move it into a thread (failed logins only).
    let failed = Filter {
        types: vec!["USER_AUTH_FAILED_*".into()],
        ..Filter::default()
    };
    let mut follower = log.follow_filtered(&failed, log.log().next_lsn());
    let watcher = std::thread::spawn(move || {
        let mut seen = 0;
        while let Ok(Some((lsn, e))) = follower.next_timeout(Duration::from_secs(1)) {
            eprintln!("{lsn}: {} by {:?}", e.event_type, e.actor);
            seen += 1;
        }
        seen
    });

    // Append from any thread: concurrent appends share fsyncs (group commit).
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut e = Event::new(
                    Timestamp::now(),
                    "USER_AUTH_FAILED_WRONG_PASSWORD",
                    Severity::Warning,
                );
                e.actor = Some(format!("user{i}"));
                e.ip = Some("203.0.113.66".parse().expect("an address"));
                log.append(&e) // durable when this returns (Sync, the default)
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no panic")?;
    }

    // Query with a filter, oldest first (or newest first), from the indexes.
    let mine = Filter {
        ip: Some("203.0.113.0/24".parse()?),
        ..Filter::default()
    };
    for r in log.query(&mine, false) {
        let (lsn, event) = r?; // damage is an Err, never an event
        println!("{lsn} {}", serde_json::to_string(&event)?); // the canonical JSON form
    }
    // Top 10 actors by failed logins, counted in the engine.
    let top = log.aggregate(&failed, &[GroupBy::Actor], Some(10))?;
    for g in &top.groups {
        println!("{} {:?}", g.count, g.key);
    }
    assert_eq!(watcher.join().expect("no panic"), 4);
    Ok(())
}
