//! Local source addresses for client sockets.
//!
//! One source IP gives at most ~28k ephemeral ports towards one server address,
//! so very large connection counts bind each client socket to an address taken
//! round-robin from a list such as `127.0.0.2-127.0.0.50` (all of 127.0.0.0/8
//! is routed to the loopback interface on Linux).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Largest number of addresses a `--source-addrs` value may expand to.
const MAX_ADDRS: usize = 65_536;

/// A non-empty list of source IPs, used round-robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(Vec<IpAddr>);

impl SourceAddrs {
    /// The address for the `i`-th connection (round-robin).
    pub fn pick(&self, i: usize) -> IpAddr {
        self.0[i % self.0.len()]
    }

    /// Number of distinct addresses.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: parsing rejects empty lists.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The addresses, in round-robin order.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.0
    }
}

impl fmt::Display for SourceAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.first(), self.0.last()) {
            (Some(a), Some(b)) if self.0.len() > 1 => {
                write!(f, "{a}..{b} ({} addrs)", self.0.len())
            }
            (Some(a), _) => write!(f, "{a}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for SourceAddrs {
    type Err = String;

    /// Accepts a comma-separated list of IPs and inclusive IPv4 ranges
    /// (`A-B`), e.g. `127.0.0.2-127.0.0.50,127.0.1.1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((a, b)) = item.split_once('-') {
                let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
                let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
                let (lo, hi) = (u32::from(a), u32::from(b));
                if lo > hi {
                    return Err(format!("range {item:?} is reversed"));
                }
                if (hi - lo) as usize >= MAX_ADDRS {
                    return Err(format!("range {item:?} has more than {MAX_ADDRS} addresses"));
                }
                out.extend((lo..=hi).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
            } else {
                let ip: IpAddr = item.parse().map_err(|e| format!("{item:?}: {e}"))?;
                out.push(ip);
            }
            if out.len() > MAX_ADDRS {
                return Err(format!("more than {MAX_ADDRS} source addresses"));
            }
        }
        if out.is_empty() {
            return Err("no source address given".to_owned());
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() -> Result<(), String> {
        let s: SourceAddrs = "127.0.0.2-127.0.0.4, 127.0.1.1".parse()?;
        assert_eq!(s.len(), 4);
        assert_eq!(s.pick(0), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(s.pick(2), IpAddr::from([127, 0, 0, 4]));
        assert_eq!(s.pick(3), IpAddr::from([127, 0, 1, 1]));
        assert_eq!(s.pick(4), IpAddr::from([127, 0, 0, 2]));
        let crossing: SourceAddrs = "127.0.0.255-127.0.1.0".parse()?;
        assert_eq!(crossing.len(), 2);
        Ok(())
    }

    #[test]
    fn rejects_bad_input() {
        assert!("".parse::<SourceAddrs>().is_err());
        assert!("127.0.0.9-127.0.0.2".parse::<SourceAddrs>().is_err());
        assert!("127.0.0.x".parse::<SourceAddrs>().is_err());
        assert!("10.0.0.0-10.255.255.255".parse::<SourceAddrs>().is_err());
    }
}
