//! Who may open a socket, decided before the upgrade: the page's origin, the client's
//! address behind trusted proxies, and per-address limits on sockets and handshakes.
//!
//! All of it is pure logic over headers, addresses and instants (tested directly); the
//! router calls [`Access::check`] on every upgrade request and answers a refusal with its
//! HTTP status (403 for an origin, 429 for a limit), so a refused client never costs a
//! socket task.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use tokio::time::Instant;

use crate::rate::TokenBucket;

/// An IP network, as in `TRUSTED_PROXIES` (`10.0.0.0/8`, `::1`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(raw: &str) -> Result<Cidr, String> {
        let bad = || format!("{raw:?} is not an IP address or CIDR (like 10.0.0.0/8)");
        let (addr, prefix) = match raw.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (raw.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr {
            net: mask(net, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// A comma-separated list of networks; empty = no proxy is trusted.
pub fn parse_cidrs(raw: &str) -> Result<Vec<Cidr>, String> {
    raw.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Cidr::parse)
        .collect()
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not a trusted proxy (every hop to the right of it
/// was added by a proxy we trust; anything to its left the client may have made up).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop our proxy wrote that does not parse: trust nothing further left.
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            break;
        }
    }
    client
}

/// The unit of the per-address limits: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network: anyone with one IPv6 address has 2^64 of them).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// Which pages may open sockets (`ALLOWED_ORIGINS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// Any page (`*`, and the default with `AUTH=off`).
    Any,
    /// Only a page served from the host the request was sent to (the default otherwise).
    SameHost,
    /// These origins (`https://app.example.com`, or `https://*.example.com` for any
    /// subdomain), compared case-insensitively.
    List(Vec<String>),
}

impl Origins {
    /// Parse `ALLOWED_ORIGINS`; `None` = the default for the auth mode.
    pub fn parse(raw: Option<&str>, auth_off: bool) -> Result<Origins, String> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(if auth_off {
                Origins::Any
            } else {
                Origins::SameHost
            });
        };
        let items: Vec<String> = raw
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if items.iter().any(|s| s == "*") {
            return Ok(Origins::Any);
        }
        for item in &items {
            let host = item
                .strip_prefix("https://")
                .or_else(|| item.strip_prefix("http://"))
                .ok_or_else(|| {
                    format!("ALLOWED_ORIGINS entry {item:?} must start with https:// or http://")
                })?;
            let host = host.strip_prefix("*.").unwrap_or(host);
            if host.is_empty() || host.contains(['/', '*', ' ', '?', '#']) {
                return Err(format!(
                    "ALLOWED_ORIGINS entry {item:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        Ok(Origins::List(items))
    }

    /// May a page of `origin` connect, on a request addressed to `host`?
    /// No `Origin` (a non-browser client) passes: the auth mode governs those.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        match self {
            Origins::Any => true,
            Origins::SameHost => {
                let authority = origin.split_once("://").map(|x| x.1);
                matches!((authority, host), (Some(a), Some(h)) if a == h.trim().to_ascii_lowercase())
            }
            Origins::List(list) => list
                .iter()
                .any(|allowed| match allowed.split_once("://*.") {
                    Some((scheme, suffix)) => origin
                        .strip_prefix(scheme)
                        .and_then(|o| o.strip_prefix("://"))
                        .is_some_and(|h| {
                            h.len() > suffix.len() && h.ends_with(&format!(".{suffix}"))
                        }),
                    None => *allowed == origin,
                }),
        }
    }
}

/// How often idle per-address records are swept away.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How long an idle handshake bucket takes to fill up again: a burst of twice the rate
/// refills in two seconds, whatever the rate. After that, forgetting it changes nothing.
const BUCKET_REFILL: Duration = Duration::from_secs(2);

struct Slot {
    sockets: u32,
    handshakes: Option<TokenBucket>,
    last_handshake: Instant,
}

/// Per-address limits: open sockets and handshakes per second (a token bucket with a
/// burst of twice the rate). `None` turns a limit off.
pub struct AddressLimits {
    max_sockets: Option<u32>,
    handshakes_per_sec: Option<u32>,
    slots: Mutex<(HashMap<IpAddr, Slot>, Instant)>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Origin,
    SocketsPerIp,
    HandshakesPerIp,
}

impl Refused {
    pub const ALL: [Refused; 3] = [
        Refused::Origin,
        Refused::SocketsPerIp,
        Refused::HandshakesPerIp,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Origin => "origin",
            Refused::SocketsPerIp => "sockets_per_ip",
            Refused::HandshakesPerIp => "handshakes_per_ip",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Refused::Origin => StatusCode::FORBIDDEN,
            Refused::SocketsPerIp | Refused::HandshakesPerIp => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refused::Origin => "this origin may not open sockets here (ALLOWED_ORIGINS)\n",
            Refused::SocketsPerIp => "too many sockets from this address\n",
            Refused::HandshakesPerIp => {
                "too many connection attempts from this address; retry later\n"
            }
        }
    }
}

/// Holds one socket's place in its address's count; dropping it frees the place.
pub struct SocketPermit {
    limits: Option<(Arc<AddressLimits>, IpAddr)>,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        if let Some((limits, key)) = self.limits.take() {
            let mut guard = limits.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = guard.0.get_mut(&key) {
                slot.sockets = slot.sockets.saturating_sub(1);
            }
        }
    }
}

impl AddressLimits {
    pub fn new(
        max_sockets: Option<u32>,
        handshakes_per_sec: Option<u32>,
        now: Instant,
    ) -> AddressLimits {
        AddressLimits {
            max_sockets: max_sockets.filter(|n| *n > 0),
            handshakes_per_sec: handshakes_per_sec.filter(|n| *n > 0),
            slots: Mutex::new((HashMap::new(), now)),
        }
    }

    pub fn is_off(&self) -> bool {
        self.max_sockets.is_none() && self.handshakes_per_sec.is_none()
    }

    /// Count a handshake from `ip` and take a socket place for it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<SocketPermit, Refused> {
        if self.is_off() {
            return Ok(SocketPermit { limits: None });
        }
        let key = address_key(ip);
        let mut guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (slots, last_sweep) = &mut *guard;
        if now.saturating_duration_since(*last_sweep) >= SWEEP_EVERY {
            *last_sweep = now;
            slots.retain(|_, s| {
                s.sockets > 0 || now.saturating_duration_since(s.last_handshake) < BUCKET_REFILL
            });
        }
        let rate = self.handshakes_per_sec;
        let slot = slots.entry(key).or_insert_with(|| Slot {
            sockets: 0,
            handshakes: rate.map(|r| TokenBucket::new(r, r.saturating_mul(2), now)),
            last_handshake: now,
        });
        slot.last_handshake = now;
        if let Some(bucket) = &mut slot.handshakes {
            if !bucket.try_take(now) {
                return Err(Refused::HandshakesPerIp);
            }
        }
        if self.max_sockets.is_some_and(|max| slot.sockets >= max) {
            return Err(Refused::SocketsPerIp);
        }
        slot.sockets += 1;
        Ok(SocketPermit {
            limits: Some((self.clone(), key)),
        })
    }

    /// Addresses with a record (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }
}

/// The upgrade-time checks, configured once.
pub struct Access {
    pub origins: Origins,
    pub trusted: Vec<Cidr>,
    pub limits: Arc<AddressLimits>,
}

impl Access {
    /// Check one upgrade request from `peer`: a permit to hold for the socket's life, or
    /// the refusal.
    pub fn check(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<SocketPermit, Refused> {
        let ip = client_ip(peer, headers, &self.trusted);
        let permit = self.limits.admit(ip, now)?;
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if !self
            .origins
            .allows(origin, self.request_host(peer, headers).as_deref())
        {
            return Err(Refused::Origin);
        }
        Ok(permit)
    }

    /// The host the client addressed: `X-Forwarded-Host` when a trusted proxy sent the
    /// request (it rewrote `Host`), else `Host`.
    fn request_host(&self, peer: IpAddr, headers: &HeaderMap) -> Option<String> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
        };
        let from_proxy = self.trusted.iter().any(|c| c.contains(peer));
        from_proxy
            .then(|| get("x-forwarded-host"))
            .flatten()
            .or_else(|| get("host"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "x", "10.0.0/8", "1.2.3.4/-1"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_cidrs("10.0.0.0/8, 127.0.0.1,").unwrap().len(), 2);
        assert!(parse_cidrs("").unwrap().is_empty());
    }

    #[test]
    fn client_addresses_behind_trusted_proxies() {
        let trusted = parse_cidrs("10.0.0.0/8").unwrap();
        let xff = |v: &str| headers(&[("x-forwarded-for", v)]);
        // Not from a trusted proxy: the header is the client's word, ignored.
        assert_eq!(
            client_ip(ip("1.2.3.4"), &xff("9.9.9.9"), &trusted),
            ip("1.2.3.4")
        );
        // From our proxy: the right-most untrusted hop, whatever the client prepended.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("6.6.6.6, 5.5.5.5"), &trusted),
            ip("5.5.5.5")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("6.6.6.6, 5.5.5.5, 10.0.0.7"), &trusted),
            ip("5.5.5.5")
        );
        // Several header lines are one list, in order.
        let two = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &two, &trusted), ip("5.5.5.5"));
        // Junk at the right: trust nothing further left; the proxy itself is the client.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("5.5.5.5, junk"), &trusted),
            ip("10.0.0.1")
        );
        // No header: the proxy.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        // Every hop trusted (a proxy that replaces the header, trusted as 0.0.0.0/0): the
        // left-most, which that proxy wrote.
        let all = parse_cidrs("0.0.0.0/0,::/0").unwrap();
        assert_eq!(
            client_ip(ip("76.1.1.1"), &xff("5.5.5.5"), &all),
            ip("5.5.5.5")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        assert_eq!(address_key(ip("1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn origins() {
        let any = Origins::parse(None, true).unwrap();
        assert_eq!(any, Origins::Any);
        assert!(any.allows(Some("https://evil.example"), Some("app.example")));

        let same = Origins::parse(None, false).unwrap();
        assert_eq!(same, Origins::SameHost);
        assert!(same.allows(Some("https://app.example"), Some("app.example")));
        assert!(same.allows(Some("http://localhost:3000"), Some("localhost:3000")));
        assert!(same.allows(Some("https://APP.example/"), Some("app.EXAMPLE")));
        assert!(!same.allows(Some("https://evil.example"), Some("app.example")));
        assert!(!same.allows(Some("http://localhost:5173"), Some("localhost:3000")));
        assert!(!same.allows(Some("null"), Some("app.example")));
        assert!(!same.allows(Some("https://app.example"), None));
        assert!(
            same.allows(None, Some("app.example")),
            "non-browser clients pass"
        );

        let list = Origins::parse(
            Some("https://app.example, https://*.preview.example/"),
            false,
        )
        .unwrap();
        assert!(list.allows(Some("https://app.example"), Some("server.example")));
        assert!(list.allows(Some("https://pr-1.preview.example"), None));
        assert!(!list.allows(Some("https://preview.example"), None));
        assert!(!list.allows(Some("http://app.example"), None));
        assert!(!list.allows(Some("https://app.example.evil"), None));
        assert!(!list.allows(Some("https://evilpreview.example"), None));
        assert_eq!(
            Origins::parse(Some("https://a.example,*"), false).unwrap(),
            Origins::Any
        );
        for bad in ["app.example", "https://", "https://a/b", "ftp://x"] {
            assert!(Origins::parse(Some(bad), false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn socket_limit_and_release() {
        let now = Instant::now();
        let limits = Arc::new(AddressLimits::new(Some(2), None, now));
        let a = ip("1.1.1.1");
        let p1 = limits.admit(a, now).unwrap();
        let _p2 = limits.admit(a, now).unwrap();
        assert_eq!(limits.admit(a, now).err(), Some(Refused::SocketsPerIp));
        assert!(
            limits.admit(ip("2.2.2.2"), now).is_ok(),
            "other addresses are apart"
        );
        drop(p1);
        assert!(
            limits.admit(a, now).is_ok(),
            "a closed socket frees its place"
        );
    }

    #[test]
    fn handshake_bucket_has_a_burst_of_twice_the_rate() {
        let t0 = Instant::now();
        let limits = Arc::new(AddressLimits::new(None, Some(5), t0));
        let a = ip("1.1.1.1");
        let ok = (0..20).filter(|_| limits.admit(a, t0).is_ok()).count();
        assert_eq!(ok, 10);
        assert_eq!(limits.admit(a, t0).err(), Some(Refused::HandshakesPerIp));
        // 5 a second refill: one more after 200 ms.
        let t1 = t0 + Duration::from_millis(200);
        assert!(limits.admit(a, t1).is_ok());
        assert!(limits.admit(a, t1).is_err());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let t0 = Instant::now();
        let limits = Arc::new(AddressLimits::new(Some(10), Some(10), t0));
        let held = limits.admit(ip("1.1.1.1"), t0).unwrap();
        drop(limits.admit(ip("2.2.2.2"), t0).unwrap());
        assert_eq!(limits.tracked(), 2);
        let later = t0 + SWEEP_EVERY;
        drop(limits.admit(ip("3.3.3.3"), later).unwrap());
        assert_eq!(
            limits.tracked(),
            2,
            "2.2.2.2 is gone; 1.1.1.1 holds a socket"
        );
        drop(held);
    }

    #[test]
    fn off_means_no_bookkeeping() {
        let limits = Arc::new(AddressLimits::new(None, Some(0), Instant::now()));
        assert!(limits.is_off());
        for _ in 0..1000 {
            std::mem::forget(limits.admit(ip("127.0.0.1"), Instant::now()).unwrap());
        }
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn access_checks_origin_against_forwarded_host_from_trusted_proxies_only() {
        let access = Access {
            origins: Origins::SameHost,
            trusted: parse_cidrs("10.0.0.0/8").unwrap(),
            limits: Arc::new(AddressLimits::new(None, None, Instant::now())),
        };
        let h = headers(&[
            ("origin", "https://app.example"),
            ("host", "internal:3000"),
            ("x-forwarded-host", "app.example"),
        ]);
        assert!(access.check(ip("10.0.0.1"), &h, Instant::now()).is_ok());
        assert_eq!(
            access.check(ip("1.2.3.4"), &h, Instant::now()).err(),
            Some(Refused::Origin)
        );
    }
}
