//! The built-in catalogs are exactly what the parsers derive from the seed
//! documents (golden files), and they say what the seeds say.
//! `AUDITLOG_WRITE_CATALOGS=1 cargo test --test catalogs` regenerates them.

use std::path::{Path, PathBuf};

use auditlog::catalog::seeds;
use auditlog::{Catalog, EventType, Severity};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogs")
}

fn seed(name: &str) -> String {
    std::fs::read_to_string(root().join("seeds").join(name)).unwrap()
}

fn derived() -> Vec<(&'static str, Vec<EventType>)> {
    vec![
        (
            "filetransfer-1.6",
            seeds::filetransfer_v16(&seed("000_f5b1087810185159.txt")),
        ),
        (
            "filetransfer-2.0",
            seeds::filetransfer_v20(&seed("001_ab693654d6577039.txt")),
        ),
        (
            "netop-portal",
            seeds::netop_portal(&seed("002_ee94a5ed88efdee1.txt")),
        ),
        ("sap-ume", seeds::sap_ume(&seed("003_ea232305b8f5d264.txt"))),
    ]
}

#[test]
fn builtin_catalogs_equal_what_the_seeds_give() {
    if std::env::var_os("AUDITLOG_WRITE_CATALOGS").is_some() {
        for (name, types) in derived() {
            let catalog = Catalog::new(name, types).unwrap();
            std::fs::write(root().join(format!("{name}.tsv")), catalog.to_tsv()).unwrap();
        }
    }
    for (name, types) in derived() {
        let catalog = Catalog::new(name, types).unwrap();
        let path = root().join(format!("{name}.tsv"));
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(
            file == catalog.to_tsv(),
            "{} differs from what the seed gives; regenerate it",
            path.display()
        );
        assert_eq!(Catalog::builtin(name).unwrap(), catalog);
    }
}

#[test]
fn the_repository_copy_of_the_seeds_is_the_shared_one() {
    // CI has ../shared beside the checkout; elsewhere there is nothing to compare.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seeds");
    if !shared.exists() {
        return;
    }
    for entry in std::fs::read_dir(&shared).unwrap() {
        let path = entry.unwrap().path();
        let copy = root().join("seeds").join(path.file_name().unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&copy).unwrap(),
            "{} differs",
            copy.display()
        );
    }
}

#[test]
fn the_catalogs_say_what_the_seeds_say() {
    let v16 = Catalog::builtin("filetransfer-1.6").unwrap();
    let v20 = Catalog::builtin("filetransfer-2.0").unwrap();
    assert_eq!(v16.len(), 165);
    assert_eq!(v20.len(), 206);
    let t = v16.get("AD_AUTH_FAILED_WRONG_PATH").unwrap();
    assert_eq!(
        (t.severity, t.since.as_deref(), t.until.as_deref()),
        (Severity::Error, Some("1.0"), Some("1.3.2"))
    );
    let t = v16.get("AD_AUTH_FAILED").unwrap();
    assert_eq!(
        (t.since.as_deref(), t.until.as_deref()),
        (Some("1.0"), None)
    );
    assert_eq!(
        v16.get("ADMIN_AUTH_FAILED_MFA").unwrap().since.as_deref(),
        Some("1.4")
    );
    let t = v16.get("USER_AUTH_FAILED_GUID_MISMATCH").unwrap();
    assert_eq!(
        (t.severity, t.until.as_deref()),
        (Severity::Info, Some("1.1"))
    );
    assert_eq!(t.notes, vec![seeds::NO_SEVERITY]);
    assert_eq!(
        v16.get("ADFS_DELETED").unwrap().notes,
        vec![seeds::NEVER_AT_RUNTIME]
    );
    assert!(v20
        .get("ADFS_DELETED")
        .unwrap()
        .description
        .contains("ADFS"));
    assert_eq!(
        v20.get("ADFS_DELETED").unwrap().notes,
        vec![seeds::NEVER_AT_RUNTIME]
    );

    // 2.0 holds every 1.6 type plus 41 new ones; some severities changed.
    let d = v16.diff(&v20);
    assert!(d.removed.is_empty(), "{:?}", d.removed);
    assert_eq!(d.added.len(), 41);
    assert!(d.severity_changed.contains(&(
        "PACKAGE_DOWNLOAD_UNAUTHORIZED_ACCESS".to_string(),
        Severity::Warning,
        Severity::Info
    )));

    let netop = Catalog::builtin("netop-portal").unwrap();
    for name in [
        "ACCOUNT/CREATE",
        "DEVICE/ENROLL",
        "USER/LOGIN",
        "USER/LOGOUT",
        "DEVICE/RE_ENROLL",
        "DEPLOYMENT_PACKAGE/DOWNLOAD_MST",
    ] {
        assert!(netop.get(name).is_some(), "{name}");
    }
    // ACCOUNT 2, ACCOUNT_AUTH_METHOD 3, DEVICE 12, DEVICE_CONFLICTS 2, DEPLOYMENT_PACKAGE 10,
    // USER_GROUP, DEVICE_GROUP, LOG_REPORT, ROLE_ASSIGNMENT 3 each, USER 13.
    assert_eq!(netop.len(), 2 + 3 + 12 + 2 + 10 + 3 + 3 + 3 + 3 + 13);
    assert!(netop
        .get("ACCOUNT/UPDATE")
        .unwrap()
        .description
        .contains("security settings"));

    let sap = Catalog::builtin("sap-ume").unwrap();
    let t = sap.get("FAILED_USER_LOGON").unwrap();
    assert_eq!(t.severity, Severity::Error); // High
    assert!(
        t.notes.iter().any(|n| n == "category: Login/Logoff"),
        "{:?}",
        t.notes
    );
    assert_eq!(
        sap.get("ACCESS_VIOLATION_OR_ACCESS_DENIED")
            .unwrap()
            .severity,
        Severity::Critical
    );
    assert_eq!(sap.get("ACCESS_GRANTED").unwrap().severity, Severity::Info);
    let creation = sap.get("USER_CREATION").unwrap();
    assert_eq!(creation.severity, Severity::Warning); // Medium, and also Low
    assert!(
        creation.notes.contains(&"details: Company ID".to_string()),
        "{:?}",
        creation.notes
    );
    assert!(creation
        .notes
        .contains(&"also logged at INFO with details: All user attributes".to_string()));
    assert_eq!(
        sap.get("CUSTOMIZING").unwrap().notes[0],
        "category: Configuration"
    );
    // 25 events in the table (two of them at two severities).
    assert_eq!(sap.len(), 25);
}
