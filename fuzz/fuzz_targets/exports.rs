//! The export side: an export directory's state and commit files, however
//! damaged, give an error, never a panic, and a commit list never moves a
//! file outside the directory; the OCSF, syslog and CEF writers take any
//! event and keep their framing (CEF one line, syslog one line or exactly
//! the counted bytes).
#![no_main]

use auditlog::{Event, Severity, Timestamp};
use auditlog_cli::formats::{cef, ocsf, syslog};
use auditlog_cli::lake;
use libfuzzer_sys::fuzz_target;

fn event(text: &str, seed: u8) -> Event {
    let mut f = text.split('\0');
    let mut next = || f.next().map(str::to_string);
    let ty = next()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "X".into());
    let mut e = Event::new(
        Timestamp(i64::from(seed) * 1_234_567_891_011),
        ty,
        Severity::from_code(seed % 6).expect("0..6"),
    );
    e.source = next();
    e.actor = next();
    e.actor_id = next();
    e.session = next();
    e.entity_type = next();
    e.entity_id = next();
    e.entity_name = next();
    e.data = next();
    if let (Some(k), Some(v)) = (next(), next()) {
        e.attrs.insert(k, v);
    }
    e.result = (seed & 1 == 1).then_some(i64::from(seed));
    e.ip = (seed & 2 == 2).then(|| "2001:db8::7".parse().expect("an address"));
    e
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 | 1 => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let inner = dir.path().join("lake");
            std::fs::create_dir(&inner).expect("a directory");
            let sentinel = dir.path().join("outside.parquet");
            std::fs::write(&sentinel, b"x").expect("a file");
            let name = if which % 3 == 0 {
                lake::STATE_FILE
            } else {
                lake::COMMIT_FILE
            };
            std::fs::write(inner.join(name), rest).expect("written");
            let _ = lake::recover(&inner);
            assert!(
                sentinel.exists(),
                "a commit list moved a file outside the directory"
            );
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let e = event(text, which);
            let f = e.fields();
            let _ = ocsf::to_value(9, &f);
            let line = cef::to_line(9, &f);
            assert!(!line.contains(['\n', '\r']));
            let mut o = syslog::SyslogOptions {
                facility: 13,
                hostname: "h".into(),
                octet_counting: false,
            };
            let m = syslog::to_message(9, &f, &o);
            assert!(m.ends_with('\n') && !m[..m.len() - 1].contains(['\n', '\r']));
            o.octet_counting = true;
            let m = syslog::to_message(9, &f, &o);
            let (len, msg) = m.split_once(' ').expect("a count");
            assert_eq!(len.parse::<usize>().expect("a number"), msg.len());
        }
    }
});
