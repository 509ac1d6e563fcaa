//! [`Filter`]: which events a query wants, as the caller says it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::event::Timestamp;
use crate::severity::Severity;

/// Which events a query returns; every condition given must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event types; any of them matches. A `*` matches any run of
    /// characters, anywhere: `USER_AUTH_FAILED_*`, `*FAILED*`, `USER_*_IN`.
    /// Names compare exactly (case matters).
    pub types: Vec<String>,
    /// Least severity (inclusive).
    pub min_severity: Option<Severity>,
    /// Greatest severity (inclusive).
    pub max_severity: Option<Severity>,
    /// Earliest time (inclusive).
    pub since: Option<Timestamp>,
    /// Latest time (inclusive).
    pub until: Option<Timestamp>,
    /// The actor: matches the actor's name, id or account name.
    pub actor: Option<String>,
    /// The client address, or a network it must be in.
    pub ip: Option<IpNet>,
    /// The source.
    pub source: Option<String>,
    /// The entity type.
    pub entity_type: Option<String>,
    /// The entity id.
    pub entity_id: Option<String>,
    /// The session.
    pub session: Option<String>,
    /// Only failures (a result code other than 0).
    pub failed: bool,
}

/// An address and prefix length: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Text that is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)")]
pub struct IpNetError(pub String);

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| err())?,
                Some(p.parse::<u8>().map_err(|_| err())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| err())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// The network's address (as written: host bits are not cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Its prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
                IpAddr::V6(a) => (u128::from(a), 128),
            }
        }
        let ((net, width), (x, xwidth)) = (bits(self.addr), bits(ip));
        if width != xwidth {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift == width || (net >> shift) == (x >> shift)
    }
}

impl Filter {
    /// Whether a type name matches [`types`](Self::types).
    pub fn type_matches(&self, name: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|p| glob_matches(p, name))
    }
}

/// Whether `name` matches `pattern`, in which each `*` stands for any run of
/// characters (none included) and everything else for itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: the whole name
    };
    for part in middle {
        match rest.find(part) {
            // The leftmost place is never worse for what follows.
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let one: IpNet = "10.0.0.5".parse().unwrap();
        assert!(
            one.contains("10.0.0.5".parse().unwrap()) && !one.contains("10.0.0.6".parse().unwrap())
        );
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("host".parse::<IpNet>().is_err());
    }

    #[test]
    fn type_patterns() {
        let f = Filter {
            types: vec!["USER_AUTH_FAILED_*".into(), "ADMIN_LOGGED_IN".into()],
            ..Filter::default()
        };
        assert!(f.type_matches("USER_AUTH_FAILED_MFA"));
        assert!(f.type_matches("ADMIN_LOGGED_IN"));
        assert!(!f.type_matches("ADMIN_LOGGED_OUT"));
        assert!(Filter::default().type_matches("ANY"));
    }

    #[test]
    fn stars_anywhere() {
        let m = glob_matches;
        assert!(m("*FAILED*", "USER_AUTH_FAILED_MFA"));
        assert!(m("*FAILED*", "FAILED"));
        assert!(m("USER_*_IN", "USER_LOGGED_IN"));
        assert!(!m("USER_*_IN", "USER_LOGGED_OUT"));
        assert!(m("*", ""));
        assert!(m("A*A", "AA"));
        assert!(!m("A*A", "A"));
        assert!(m("*_IN", "ADMIN_LOGGED_IN"));
        assert!(!m("*_IN", "ADMIN_LOGGED_INX"));
        assert!(m("A**B", "AB"));
        assert!(m("USER_LOGGED_IN", "USER_LOGGED_IN"));
        assert!(!m("USER_LOGGED_IN", "USER_LOGGED_INX"));
        assert!(m("*a*b*c", "xxaybzbc"));
    }
}
