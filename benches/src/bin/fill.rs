//! Fills a log with 128-byte records until it holds at least the given number
//! of bytes, prints `ready`, and keeps appending until it is killed: the
//! state a recovery benchmark opens "after SIGKILL".
//!
//! Usage: `fill DIR BYTES`

use auditlog::{Durability, Log, Options};
use auditlog_bench::payload_128;
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(bytes)) = (args.next(), args.next()) else {
        eprintln!("usage: fill DIR BYTES");
        std::process::exit(2);
    };
    let Ok(bytes) = bytes.parse::<u64>() else {
        eprintln!("fill: BYTES must be a whole number, not {bytes:?}");
        std::process::exit(2);
    };
    let log = match Log::open(&dir, Options::default().durability(Durability::Buffered)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fill: {e}");
            std::process::exit(1);
        }
    };
    let per_record = 16 + 128;
    let mut i = 0u64;
    let batch: Vec<[u8; 128]> = (0..1024).map(payload_128).collect();
    while i * per_record < bytes {
        log.append_batch(&batch).expect("append");
        i += batch.len() as u64;
    }
    println!("ready");
    std::io::stdout().flush().ok();
    loop {
        i += 1;
        log.append(&payload_128(i)).expect("append");
    }
}
