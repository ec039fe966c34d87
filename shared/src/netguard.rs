//! The SSRF guard's rules: which addresses a webhook may never reach (unless allowlisted).
//! Checked on resolved addresses at connect time (the worker's resolver) and on IP literals
//! when an endpoint is created.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

/// A CIDR block such as `127.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr =
            addr.parse().map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `127.0.0.0/8,::1/128` → blocks.
pub fn parse_cidrs(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::parse).collect()
}

fn v4_forbidden(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified",
        (10, ..) => "private",
        (100, 64..=127, _) => "CGNAT",
        (127, ..) => "loopback",
        (169, 254, _) => "link-local",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return None,
    })
}

/// Why `ip` may not be a webhook destination, or `None` when it is a public address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::/96) carry an IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_forbidden(v4).or(None);
            }
            let seg = v6.segments();
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                return v4_forbidden(Ipv4Addr::from(u128::from(v6) as u32));
            }
            Some(match seg[0] {
                _ if v6 == Ipv6Addr::UNSPECIFIED => "unspecified",
                _ if v6 == Ipv6Addr::LOCALHOST => "loopback",
                0 if seg[1..6] == [0, 0, 0, 0, 0] => "IPv4-compatible",
                s if s & 0xfe00 == 0xfc00 => "unique local",
                s if s & 0xffc0 == 0xfe80 => "link-local",
                s if s & 0xffc0 == 0xfec0 => "site-local",
                s if s & 0xff00 == 0xff00 => "multicast",
                0x2001 if seg[1] == 0x0db8 => "documentation",
                0x2002 => {
                    return v4_forbidden(Ipv4Addr::new(
                        (seg[1] >> 8) as u8,
                        seg[1] as u8,
                        (seg[2] >> 8) as u8,
                        seg[2] as u8,
                    ));
                }
                0x0100 if seg[1..4] == [0, 0, 0] => "discard",
                _ => return None,
            })
        }
    }
}

/// The guard: forbidden ranges, minus an allowlist.
#[derive(Debug, Clone, Default)]
pub struct NetGuard {
    allow: Vec<Cidr>,
}

impl NetGuard {
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    pub fn allowlist(&self) -> &[Cidr] {
        &self.allow
    }

    /// `Err(reason)` when `ip` is forbidden and not allowlisted.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        match forbidden_reason(ip) {
            Some(reason) if !self.allow.iter().any(|c| c.contains(ip)) => Err(reason),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_ranges() {
        for (addr, why) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("192.0.2.10", "documentation"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("fd00::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(forbidden_reason(ip(addr)), Some(why), "{addr}");
        }
        for public in
            ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"]
        {
            assert_eq!(forbidden_reason(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_allowlist_opens_exactly_its_blocks() {
        let guard = NetGuard::new(parse_cidrs("127.0.0.0/8, ::1/128").unwrap());
        assert!(guard.check(ip("127.0.0.1")).is_ok());
        assert!(guard.check(ip("127.9.9.9")).is_ok());
        assert!(guard.check(ip("::1")).is_ok());
        assert_eq!(guard.check(ip("10.0.0.1")), Err("private"));
        assert_eq!(
            guard.check(ip("::ffff:127.0.0.1")),
            Err("loopback"),
            "mapped form is not the v4 block"
        );
        assert!(guard.check(ip("8.8.8.8")).is_ok());
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        assert!(parse_cidrs("nope").is_err());
        assert_eq!(parse_cidrs("10.1.2.3").unwrap()[0].to_string(), "10.1.2.3/32");
        let all = NetGuard::new(parse_cidrs("0.0.0.0/0").unwrap());
        assert!(all.check(ip("10.0.0.1")).is_ok());
    }
}
