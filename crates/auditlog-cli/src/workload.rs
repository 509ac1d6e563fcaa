//! A realistic, seeded audit workload from the built-in file-transfer
//! catalog: a month of mostly INFO traffic from a few hundred users on a few
//! thousand addresses, with a password-guessing burst from one address,
//! quarantined packages, and administrators changing the configuration.

use std::net::IpAddr;

use auditlog::{Catalog, Event, Severity, Timestamp};

/// Parameters of a workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// How many events.
    pub events: u64,
    /// Seed of the generator.
    pub seed: u64,
    /// Time of the first event.
    pub start: Timestamp,
    /// Length of the simulated period, in seconds.
    pub span_secs: i64,
    /// Number of users.
    pub users: u64,
    /// Number of client addresses.
    pub addresses: u64,
}

/// The address the password-guessing burst comes from.
pub const ATTACKER: &str = "203.0.113.66";
/// The administrator whose actions the demo asks about.
pub const ADMIN: &str = "admin1";
const ADMINS: u64 = 4;

impl Default for Workload {
    fn default() -> Self {
        Workload {
            events: 1_000_000,
            seed: 42,
            start: "2026-10-24T00:00:00Z".parse().expect("a valid time"),
            span_secs: 30 * 86_400,
            users: 300,
            addresses: 3_000,
        }
    }
}

impl Workload {
    /// The end of the simulated period.
    pub fn end(&self) -> Timestamp {
        Timestamp(self.start.0 + self.span_secs * 1_000_000_000)
    }

    /// When the password-guessing burst starts (day 20, 03:00).
    pub fn burst_start(&self) -> Timestamp {
        Timestamp(self.start.0 + (19 * 86_400 + 3 * 3600) * 1_000_000_000)
    }

    /// The events, in time order.
    pub fn generate(&self) -> impl Iterator<Item = Event> + '_ {
        let catalog = Catalog::builtin("filetransfer-2.0").expect("built in");
        let severity = move |t: &str| catalog.get(t).map_or(Severity::Info, |t| t.severity);
        let mut rng = SplitMix64(self.seed);
        let burst_len = (self.events / 500).max(1);
        let burst_at = (self.burst_start().0 - self.start.0) as f64 / (self.span_secs as f64 * 1e9);
        let burst_first = (burst_at * self.events as f64) as u64;
        let step = self.span_secs as f64 * 1e9 / self.events.max(1) as f64;
        (0..self.events).map(move |i| {
            let r = rng.next();
            // Millisecond times, as applications log them.
            let ns = (i as f64 * step) as i64 / 1_000_000 * 1_000_000;
            let time = Timestamp(self.start.0 + ns + (r % 2) as i64 * 1_000_000);
            let user = rng.next() % self.users;
            let addr = self.address(user * 7 + rng.next() % 10);
            let in_burst = i >= burst_first && i < burst_first + burst_len;
            let pick = rng.next() % 10_000;
            let (ty, actor, ip, result): (&str, String, IpAddr, i64) = if in_burst {
                let victim = rng.next() % self.users;
                (
                    "USER_AUTH_FAILED_WRONG_PASSWORD",
                    format!("user{victim:03}"),
                    ATTACKER.parse().unwrap(),
                    1,
                )
            } else {
                let who = format!("user{user:03}");
                match pick {
                    0..=2999 => ("FILE_DOWNLOAD_STARTED", who, addr, 0),
                    3000..=4499 => ("FILE_ADDED", who, addr, 0),
                    4500..=5499 => ("PACKAGE_ADDED", who, addr, 0),
                    5500..=7499 => ("USER_LOGGED_IN", who, addr, 0),
                    7500..=9199 => ("USER_LOGGED_OUT", who, addr, 0),
                    9200..=9599 => ("USER_AUTH_FAILED_WRONG_PASSWORD", who, addr, 1),
                    9600..=9649 => ("PACKAGE_QUARANTINED", who, addr, 0),
                    9650..=9699 => ("ADMIN_LOGGED_IN", self.admin(&mut rng), self.address(9), 0),
                    9700..=9739 => ("CONFIG_UPDATED", self.admin(&mut rng), self.address(9), 0),
                    9740..=9759 => (
                        "USER_PERMISSIONS_CHANGED",
                        self.admin(&mut rng),
                        self.address(9),
                        0,
                    ),
                    9760..=9799 => ("USER_AUTH_FAILED_MFA", who, addr, 1),
                    _ => ("EMAIL_SENT", who, addr, 0),
                }
            };
            let mut e = Event::new(time, ty, severity(ty));
            e.source = Some(
                if actor.starts_with("admin") {
                    "WEB_ADMIN"
                } else {
                    "WEB_USER"
                }
                .to_string(),
            );
            e.ip = Some(ip);
            e.actor_id = Some(format!(
                "{}",
                1000 + actor.bytes().fold(0u64, |a, b| a * 31 + u64::from(b)) % 100_000
            ));
            e.actor_account = Some(actor.to_uppercase());
            if !in_burst {
                // One session per user per day.
                e.session = Some(format!(
                    "s-{}-{}",
                    actor,
                    (time.0 - self.start.0) / 86_400_000_000_000
                ));
            }
            e.actor = Some(actor);
            e.result = Some(result);
            if ty.starts_with("PACKAGE") || ty.starts_with("FILE") {
                e.entity_type = Some("PACKAGE".into());
                e.entity_id = Some(format!("p-{}", rng.next() % 200_000));
            }
            if ty == "CONFIG_UPDATED" {
                e.attrs.insert(
                    "parameter".into(),
                    format!("smtp.timeout.{}", rng.next() % 20),
                );
            }
            if ty == "PACKAGE_QUARANTINED" {
                e.attrs.insert("engine".into(), "clamav".into());
            }
            e
        })
    }

    fn address(&self, k: u64) -> IpAddr {
        let n = k % self.addresses;
        IpAddr::from([10, (n >> 16) as u8, (n >> 8) as u8, n as u8])
    }

    fn admin(&self, rng: &mut SplitMix64) -> String {
        format!("admin{}", 1 + rng.next() % ADMINS)
    }
}

/// The workload's seeded generator (SplitMix64: fast, and the same stream
/// on every machine).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133e_b133);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_seeded_ordered_and_has_its_burst() {
        let w = Workload {
            events: 20_000,
            ..Workload::default()
        };
        let a: Vec<Event> = w.generate().collect();
        let b: Vec<Event> = w.generate().collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|p| p[0].time <= p[1].time));
        let burst = a
            .iter()
            .filter(|e| e.ip == Some(ATTACKER.parse().unwrap()))
            .count();
        assert_eq!(burst, 40);
        assert!(a.iter().any(|e| e.event_type == "PACKAGE_QUARANTINED"));
        assert!(a
            .iter()
            .any(|e| e.actor.as_deref() == Some(ADMIN) && e.event_type == "CONFIG_UPDATED"));
        let info = a.iter().filter(|e| e.severity == Severity::Info).count();
        assert!(
            info * 10 > a.len() * 8,
            "mostly INFO: {info} of {}",
            a.len()
        );
    }
}
