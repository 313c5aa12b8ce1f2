//! Addresses and origins: CIDR lists for trusted proxies, the client address
//! rule, and the Origin rule of PROTOCOL.md section 1.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network such as `10.0.0.0/8` or `::1/128` (a bare address is a /32
/// or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network. IPv4-mapped IPv6 addresses are
    /// compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
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

/// The client address: the TCP peer, or, when the peer is a trusted proxy,
/// the last (rightmost) untrusted address of `X-Forwarded-For`.
pub fn client_addr<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|h| h.split(',')).collect();
    let mut last = peer;
    for hop in hops.iter().rev() {
        let hop = hop.trim();
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the chain: stop believing it at this point.
            return last;
        };
        let ip = canonical(ip);
        if !is_trusted(ip) {
            return ip;
        }
        last = ip;
    }
    last
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    // "[v6]:port" or "v4:port"
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// A normalised origin: lower-case scheme and host, default port dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is tolerated). `null`
    /// and anything else that is not a tuple origin give `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_suffix('/').unwrap_or(s);
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains('/') {
            return None;
        }
        if rest.contains('@') || rest.contains(char::is_whitespace) {
            return None;
        }
        let rest = rest.to_ascii_lowercase();
        let (host, port) = split_host_port(&rest)?;
        let default = if scheme == "https" { 443 } else { 80 };
        Some(match port {
            Some(p) if p != default => Self(format!("{scheme}://{host}:{p}")),
            _ => Self(format!("{scheme}://{host}")),
        })
    }

    /// Whether the scheme is https.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let host = &s[..=end];
        let after = &s[end + 1..];
        if after.is_empty() {
            return Some((host, None));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((host, Some(port)));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `--allowed-origins` list: full origins, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginSet {
    /// `*`: every origin is allowed.
    Any,
    /// Only these.
    List(Vec<Origin>),
}

impl OriginSet {
    /// Whether `origin` (normalised) is in the set.
    pub fn allows(&self, origin: &Origin) -> bool {
        match self {
            Self::Any => true,
            Self::List(list) => list.contains(origin),
        }
    }
}

impl FromStr for OriginSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut list = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "*" {
                return Ok(Self::Any);
            }
            list.push(Origin::parse(part).ok_or_else(|| format!("{part:?} is not an origin"))?);
        }
        Ok(Self::List(list))
    }
}

/// Decides the Origin rule for one request.
///
/// `origin` is the request's `Origin` header (None when absent: command-line
/// clients pass), `host` its `Host` header.
pub fn origin_allowed(
    origin: Option<&str>,
    host: Option<&str>,
    public_origin: Option<&Origin>,
    allowed: Option<&OriginSet>,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin) = Origin::parse(origin) else {
        return false; // `null` and garbage are foreign
    };
    if let Some(set) = allowed {
        return set.allows(&origin);
    }
    let public = match public_origin {
        Some(p) => Some(p.clone()),
        None => host.and_then(|h| Origin::parse(&format!("http://{h}"))),
    };
    public.is_some_and(|p| p == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    #[test]
    fn client_addr_rules() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // untrusted peer: header ignored
        let stranger: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            client_addr(stranger, ["1.1.1.1"].into_iter(), &trusted),
            stranger
        );
        // trusted peer: rightmost untrusted
        assert_eq!(
            client_addr(peer, ["1.1.1.1, 2.2.2.2, 10.0.0.5"].into_iter(), &trusted),
            "2.2.2.2".parse::<IpAddr>().unwrap()
        );
        // several headers are one list
        assert_eq!(
            client_addr(peer, ["3.3.3.3", "4.4.4.4"].into_iter(), &trusted),
            "4.4.4.4".parse::<IpAddr>().unwrap()
        );
        // no header: the peer
        assert_eq!(client_addr(peer, std::iter::empty(), &trusted), peer);
        // garbage stops the walk
        assert_eq!(
            client_addr(peer, ["5.5.5.5, junk"].into_iter(), &trusted),
            peer
        );
        // no trusted proxies configured: always the peer
        assert_eq!(client_addr(peer, ["9.9.9.9"].into_iter(), &[]), peer);
    }

    #[test]
    fn origin_normalisation() {
        assert_eq!(
            Origin::parse("HTTP://Example.COM:80").unwrap().as_str(),
            "http://example.com"
        );
        assert_eq!(
            Origin::parse("https://a.b:443/").unwrap().as_str(),
            "https://a.b"
        );
        assert_eq!(
            Origin::parse("https://a.b:8443").unwrap().as_str(),
            "https://a.b:8443"
        );
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().as_str(),
            "http://[::1]:8080"
        );
        assert!(Origin::parse("null").is_none());
        assert!(Origin::parse("ftp://x").is_none());
        assert!(Origin::parse("http://x/path").is_none());
    }

    #[test]
    fn origin_rule() {
        let host = Some("127.0.0.1:8080");
        assert!(origin_allowed(None, host, None, None));
        assert!(origin_allowed(
            Some("http://127.0.0.1:8080"),
            host,
            None,
            None
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            host,
            None,
            None
        ));
        assert!(!origin_allowed(Some("null"), host, None, None));
        let public = Origin::parse("https://chat.example.com");
        assert!(origin_allowed(
            Some("https://CHAT.example.com:443"),
            host,
            public.as_ref(),
            None
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8080"),
            host,
            public.as_ref(),
            None
        ));
        let set: OriginSet = "https://a.example, https://b.example:8443".parse().unwrap();
        assert!(origin_allowed(
            Some("https://b.example:8443"),
            host,
            None,
            Some(&set)
        ));
        assert!(!origin_allowed(
            Some("http://127.0.0.1:8080"),
            host,
            None,
            Some(&set)
        ));
        let any: OriginSet = "*".parse().unwrap();
        assert!(origin_allowed(
            Some("http://anything"),
            host,
            None,
            Some(&any)
        ));
        assert!(!origin_allowed(Some("null"), host, None, Some(&any)));
    }
}
